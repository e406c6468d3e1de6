"""Injecting a steering vector while the model runs, as Fractional Reasoning does
(arXiv 2506.15882; shengliu66/FractionalReason, ``utils/llm_layers.py`` ICVLayer).

After block ``i``'s MLP, the output ``x`` at the *last* position of every forward becomes

    x' = normalize(normalize(x) + alpha * s(t) * normalize(v_i)) * |x|

so its norm is kept and only its direction moves. ``s(t) = max(0.5 (cos(pi min(t, 50) / 50) + 1),
0.5)`` is their cosine ramp-down over the generated tokens ``t`` (reset by each prefill, a
forward of more than one position; each one-token forward then counts one step), so the push is
full on the prompt's last token and halves over the first 25 generated tokens. ``alpha`` is a
continuous knob; at 0 no hook is installed, so the model is the unsteered one bit for bit.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch

from attractor.steering.vector import SteeringVector

RAMP = 50


def schedule(step: int) -> float:
    """Their ``max(cosine_rampdown(step, 50), 0.5)``."""
    t = min(max(step, 0), RAMP)
    return max(0.5 * (math.cos(math.pi * t / RAMP) + 1.0), 0.5)


def steer_last(x: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` (batch, seq, d) with its last position moved toward ``direction`` (norm kept)."""
    dtype = x.dtype
    xf = x.float()
    last = xf[:, -1]
    norm = last.norm(dim=-1, keepdim=True)
    unit = torch.nn.functional.normalize(last, dim=-1)
    push = strength * torch.nn.functional.normalize(direction.float(), dim=-1)
    moved = torch.nn.functional.normalize(unit + push, dim=-1) * norm
    out = xf.clone()
    out[:, -1] = moved
    return out.to(dtype)


@contextmanager
def steered(model, vector: SteeringVector | None, alpha: float) -> Iterator[None]:
    """Hooks on every block's MLP for the duration of the context (none when ``alpha`` is 0 or
    there is no vector)."""
    if vector is None or alpha == 0:
        yield
        return
    from attractor.mechanism.modules import decoder_modules

    mods = decoder_modules(model)
    dev = next(model.parameters()).device
    dirs = torch.from_numpy(vector.directions).to(dev)
    state = {"step": 0}
    handles = []

    def make(i: int):
        d = dirs[i]

        def hook(_module, _inputs, output):
            x = output[0] if isinstance(output, tuple) else output
            if x.shape[1] > 1:  # a prefill restarts the schedule
                state["step"] = 0
            y = steer_last(x, d, alpha * schedule(state["step"]))
            return (y, *output[1:]) if isinstance(output, tuple) else y
        return hook

    def count(_module, _inputs, output):  # after the last block: one step per 1-token forward
        x = output[0] if isinstance(output, tuple) else output
        if x.shape[1] == 1:
            state["step"] += 1

    try:
        for i, mlp in enumerate(mods.mlp):
            if bool(dirs[i].abs().sum() > 0):
                handles.append(mlp.register_forward_hook(make(i)))
        handles.append(mods.layers[-1].register_forward_hook(count))
        yield
    finally:
        for h in handles:
            h.remove()
