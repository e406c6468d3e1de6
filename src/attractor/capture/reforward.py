"""Teacher-forced re-forward of stored token ids with forward hooks that keep only the
requested (layer, position) vectors.

Hooks sit on the input embeddings (layer 0), on decoder layers 1 .. L-1, and on the final norm
(layer L), so the captured vectors equal ``output_hidden_states`` of a plain forward (a test
proves it) without materialising every layer at every position. The forward stops after the
deepest requested layer, and the LM head never runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attractor.capture.positions import Target


class _Done(Exception):
    """Raised by the deepest hook to end the forward early."""


@dataclass
class BatchItem:
    """One rollout in a re-forward batch: its token ids and its targets."""

    ids: list[int]
    targets: list[Target]


def decoder_parts(model):
    """(decoder, embedding module, decoder layers, final norm) of a HF causal LM."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    layers = getattr(base, "layers", None)
    norm = getattr(base, "norm", None) or getattr(base, "final_layernorm", None)
    if layers is None or norm is None:
        raise TypeError(f"{type(model).__name__}: cannot find decoder layers and final norm")
    return base, model.get_input_embeddings(), layers, norm


@torch.inference_mode()
def capture_batch(model, items: list[BatchItem], layers: list[int], pad_id: int = 0,
                  last_before_norm: bool = False) -> dict[int, torch.Tensor]:
    """Vectors of every target of ``items`` at every layer in ``layers``.

    Layer ``L`` is after the final norm (``output_hidden_states``' last entry) unless
    ``last_before_norm``, which reads the last decoder layer's own output there.

    Returns ``{layer: tensor (n_targets, d)}`` in float32 on CPU, targets in item order.
    Sequences are right-padded, so with causal attention padding never affects real tokens.
    """
    base, embed, blocks, norm = decoder_parts(model)
    n_layers = len(blocks)
    dev = next(model.parameters()).device
    width = max(len(it.ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    for i, it in enumerate(items):
        ids[i, :len(it.ids)] = torch.tensor(it.ids, dtype=torch.long)
    single_rows, single_pos, single_slot, chunks = [], [], [], []
    slot = 0
    for i, it in enumerate(items):
        for t in it.targets:
            if t.end - t.start == 1:
                single_rows.append(i)
                single_pos.append(t.start)
                single_slot.append(slot)
            else:
                chunks.append((slot, i, t.start, t.end))
            slot += 1
    n_targets = slot
    rows_t = torch.tensor(single_rows, dtype=torch.long, device=dev)
    pos_t = torch.tensor(single_pos, dtype=torch.long, device=dev)
    slots_t = torch.tensor(single_slot, dtype=torch.long)
    out: dict[int, torch.Tensor] = {}
    wanted = set(layers)
    deepest = max(layers)

    def take(layer: int, hidden) -> None:
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        res = torch.empty((n_targets, h.shape[-1]), dtype=torch.float32)
        if single_rows:
            res[slots_t] = h[rows_t, pos_t].float().cpu()
        for s, i, a, b in chunks:
            res[s] = h[i, a:b].float().mean(0).cpu()
        out[layer] = res
        if layer == deepest and deepest < n_layers:
            raise _Done

    handles = []
    try:
        if 0 in wanted:
            handles.append(embed.register_forward_hook(lambda m, a, o: take(0, o)))
        for i in range(1, n_layers + last_before_norm):
            if i in wanted:
                handles.append(blocks[i - 1].register_forward_hook(
                    lambda m, a, o, layer=i: take(layer, o)))
        if n_layers in wanted and not last_before_norm:
            handles.append(norm.register_forward_hook(lambda m, a, o: take(n_layers, o)))
        try:
            base(input_ids=ids.to(dev), use_cache=False)
        except _Done:
            pass
    finally:
        for h in handles:
            h.remove()
    return out


def plan_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Group item indices (longest first) so that rows x padded width stays <= max_tokens
    (a single longer item gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * width > max_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
