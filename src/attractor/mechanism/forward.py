"""One teacher-forced forward with hooks that keep, at chosen (row, token) positions only, the
residual stream entering every decoder layer, each layer's attention and MLP outputs, and the
last residual (the final norm's input); optionally with one layer skipped (its output replaced
by its input) or with residual states patched in.

The decomposition is exact by construction of pre-norm decoders: h_{l+1} = h_l + a_l + m_l, so
h_0 + sum_l (a_l + m_l) equals the last residual (a test checks it to 1e-5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from attractor.mechanism.modules import DecoderModules


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _replace_hidden(args, kwargs, new):
    if args:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


@dataclass
class Record:
    """Gathered tensors of one forward, every tensor (N, d) for the N gathered positions."""

    resid: list[torch.Tensor] = field(default_factory=list)   # h_0 .. h_L (L + 1 entries)
    attn: list[torch.Tensor] = field(default_factory=list)    # a_0 .. a_{L-1}
    mlp: list[torch.Tensor] = field(default_factory=list)     # m_0 .. m_{L-1}

    def contribution(self, layer: int) -> torch.Tensor:
        """a_l + m_l in float32."""
        return self.attn[layer].float() + self.mlp[layer].float()


def pad_batch(seqs: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """Right-padded ids (causal attention: padding never reaches real tokens)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids.to(device)


@torch.inference_mode()
def recorded_forward(mods: DecoderModules, ids: torch.Tensor, rows: torch.Tensor,
                     pos: torch.Tensor, skip: int | None = None,
                     patch: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                     inputs_embeds: torch.Tensor | None = None,
                     skip_mask: torch.Tensor | None = None) -> Record:
    """Forward ``ids`` (or ``inputs_embeds``) through the decoder and gather at (rows, pos).

    ``skip``: decoder layer whose output is replaced by its input, at every position or, with
    ``skip_mask`` (bool, the shape of ``ids``), where the mask is true.
    ``patch(l, h)``: called with the residual stream entering layer l (l = 0 .. L, L being the
    final norm's input); returns the stream to use instead (the patch intervention).
    """
    rec = Record()
    n = mods.n_layers
    handles = []

    def pre(i):
        def hook(module, args, kwargs):
            h = _hidden(args, kwargs)
            if patch is not None:
                new = patch(i, h)
                if new is not h:
                    h = new
                    rec.resid.append(h[rows, pos].clone())
                    return _replace_hidden(args, kwargs, h)
            rec.resid.append(h[rows, pos].clone())
            return None
        return hook

    def keep(store):
        def hook(module, args, output):
            o = output[0] if isinstance(output, tuple) else output
            store.append(o[rows, pos].clone())
        return hook

    def skipper(module, args, kwargs, output):
        h = _hidden(args, kwargs)
        if skip_mask is not None:
            o = output[0] if isinstance(output, tuple) else output
            h = torch.where(skip_mask.unsqueeze(-1), h, o)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    try:
        for i in range(n):
            handles.append(mods.layers[i].register_forward_pre_hook(pre(i), with_kwargs=True))
            handles.append(mods.attn[i].register_forward_hook(keep(rec.attn)))
            handles.append(mods.mlp[i].register_forward_hook(keep(rec.mlp)))
        handles.append(mods.norm.register_forward_pre_hook(pre(n), with_kwargs=True))
        if skip is not None:
            handles.append(mods.layers[skip].register_forward_hook(skipper, with_kwargs=True))
        if inputs_embeds is not None:
            mods.base(inputs_embeds=inputs_embeds, use_cache=False)
        else:
            mods.base(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return rec


@torch.inference_mode()
def lens_logits(mods: DecoderModules, h: torch.Tensor) -> torch.Tensor:
    """Logit lens of residual states ``h`` (N, d): final norm then LM head, float32. At the
    last residual this is the model's own output."""
    return mods.lm_head(mods.norm(h)).float()
