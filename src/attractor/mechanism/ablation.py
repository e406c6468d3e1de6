"""Head ablation: zero one attention head's output (its slice of the output projection's input)
and decode greedily; the answers are graded as the run's were."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from attractor.config import SamplingConfig
from attractor.errors import ConfigError
from attractor.mechanism.modules import DecoderModules


@contextmanager
def ablated_head(mods: DecoderModules, layer: int, head: int) -> Iterator[None]:
    """Within the block, head ``head`` of layer ``layer`` contributes nothing."""
    lo, hi = head * mods.head_dim, (head + 1) * mods.head_dim

    def pre(module, args):
        x = args[0].clone()
        x[..., lo:hi] = 0
        return (x, *args[1:])

    handle = mods.out_proj[layer].register_forward_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """``all`` | ``none`` | ``L.H,L.H``: the heads to ablate."""
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "all":
        return [(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        layer, dot, head = item.partition(".")
        try:
            lh = (int(layer), int(head))
        except ValueError:
            raise ConfigError(f"--ablate: '{item}' is not LAYER.HEAD (or all, none)") from None
        if not dot or not (0 <= lh[0] < n_layers and 0 <= lh[1] < n_heads):
            raise ConfigError(f"--ablate: '{item}' is out of range; the model has layers "
                              f"0..{n_layers - 1} and heads 0..{n_heads - 1}")
        out.append(lh)
    if not out:
        raise ConfigError("--ablate: no head given")
    return out


def greedy_texts(engine, question_ids: list[str], prompts: list[list[int]],
                 max_new_tokens: int) -> list[str]:
    """One greedy completion per prompt."""
    cfg = SamplingConfig(samples=1, temperature=0.0, max_new_tokens=max_new_tokens)
    return [g[0].text for g in engine.generate(question_ids, prompts, cfg)]
