"""The modules of a decoder-only HF causal LM that the mechanism commands hook: per layer the
attention block, the MLP and the attention's output projection (heads are slices of its input),
plus the final norm and the LM head. Llama, Qwen2, Mistral, Gemma and most current decoders name
them ``self_attn``, ``mlp`` and ``o_proj``; GPT-2 style blocks (``attn``, ``mlp``, ``c_proj``)
are accepted too."""
from __future__ import annotations

from dataclasses import dataclass

from attractor.capture.reforward import decoder_parts
from attractor.errors import UserError

ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
OUT_NAMES = ("o_proj", "c_proj", "out_proj", "dense")


@dataclass
class DecoderModules:
    """Hook points of one model."""

    base: object
    embed: object
    layers: list
    attn: list
    mlp: list
    out_proj: list
    norm: object
    lm_head: object
    n_heads: int
    head_dim: int

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def _child(module, names: tuple[str, ...]):
    for n in names:
        if hasattr(module, n):
            return getattr(module, n)
    return None


def decoder_modules(model) -> DecoderModules:
    """The hook points of ``model``; a :class:`UserError` naming the expected submodules when the
    architecture has no separable attention and MLP outputs."""
    arch = type(model).__name__
    try:
        base, embed, layers, norm = decoder_parts(model)
    except TypeError:
        raise UserError(f"{arch}: no decoder layers and final norm found (expected "
                        "model.model.layers and model.model.norm)") from None
    attn, mlp, out = [], [], []
    for i, layer in enumerate(layers):
        a, m = _child(layer, ATTN_NAMES), _child(layer, MLP_NAMES)
        o = _child(a, OUT_NAMES) if a is not None else None
        if a is None or m is None or o is None:
            kids = ", ".join(n for n, _ in layer.named_children())
            raise UserError(f"{arch}: decoder layer {i} has no separable attention and MLP "
                            f"outputs (expected one of {'/'.join(ATTN_NAMES)} with an "
                            f"{'/'.join(OUT_NAMES)} projection, and one of {'/'.join(MLP_NAMES)};"
                            f" it has {kids})")
        attn.append(a)
        mlp.append(m)
        out.append(o)
    cfg = model.config
    n_heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    head_dim = int(getattr(cfg, "head_dim", 0) or (cfg.hidden_size // max(1, n_heads)))
    return DecoderModules(base, embed, list(layers), attn, mlp, out, norm,
                          model.get_output_embeddings(), n_heads, head_dim)
