"""Depth use of a rollout (after Csordas et al. 2025, "Do Language Models Use Their Depth
Efficiently?", robertcsordas/llm_effective_depth ``analyze_norms.py``, ``logitlens.py``,
``analyze_future_effects.py``).

With h_{l+1} = h_l + a_l + m_l, at each chosen position and decoder layer l:
    attn_rel  = ||a_l|| / ||h_l||            attn_cos  = cos(a_l, h_l)
    mlp_rel   = ||m_l|| / ||h_l + a_l||      mlp_cos   = cos(m_l, h_l + a_l)
    layer_rel = ||a_l + m_l|| / ||h_l||      layer_cos = cos(a_l + m_l, h_l)
(the reference's definitions: the MLP is measured against the stream it reads). The logit lens
reads every residual h_0 .. h_L through the final norm and the LM head: KL(p_L || p_l), the
overlap of the top-5 tokens with the final top-5, and the rank of the final top-1 token. The
commitment layer at the decisive position is the first l from which the lens's top-1 equals the
final top-1 and stays equal.

Layer skipping replaces layer s's output by its input at every position (the reference skips from
a position t onward and keeps the first token; we skip everywhere, as the issue asks, so the
effect covers the whole rollout) and records, for each later layer e, the relative change
||c'_e - c_e|| / ||c_e|| of its contribution c_e = a_e + m_e (max over the chosen positions, as the
reference takes the max over positions), the output change ||p' - p||_2 (max over positions)
and whether the top-1 token at the decisive position flips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attractor.mechanism.forward import lens_logits, pad_batch, recorded_forward
from attractor.mechanism.modules import DecoderModules

EPS = 1e-6  # the reference clamps norms at 1e-6


@dataclass
class DepthItem:
    """One rollout: token ids, the gathered token indices with their labels, and the index (in
    that list) of the decisive position, if any."""

    ids: list[int]
    positions: list[int]
    labels: list[tuple[str, int]]      # (position spec, occurrence)
    decisive: int | None


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1).clamp(min=EPS)


def _cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(x, y, dim=-1)


def contributions(rec) -> dict[str, np.ndarray]:
    """The six contribution columns, each (L, N)."""
    cols = {k: [] for k in ("attn_rel", "mlp_rel", "layer_rel", "attn_cos", "mlp_cos",
                            "layer_cos")}
    for l, (a, m) in enumerate(zip(rec.attn, rec.mlp)):
        h, a, m = rec.resid[l].float(), a.float(), m.float()
        ha = h + a
        cols["attn_rel"].append(a.norm(dim=-1) / _norm(h))
        cols["mlp_rel"].append(m.norm(dim=-1) / _norm(ha))
        cols["layer_rel"].append((a + m).norm(dim=-1) / _norm(h))
        cols["attn_cos"].append(_cos(a, h))
        cols["mlp_cos"].append(_cos(m, ha))
        cols["layer_cos"].append(_cos(a + m, h))
    return {k: torch.stack(v).cpu().numpy() for k, v in cols.items()}


LENS_ROWS = 256  # residual states per LM-head matmul: the head's weight is read once per block


def lens(mods: DecoderModules, rec) -> dict[str, np.ndarray]:
    """Logit-lens columns, each (L + 1, N): KL to the final distribution, top-5 overlap, rank of
    the final top-1 token; plus the final top-1 (N,). All layers share each LM-head matmul (a
    matmul per layer would read a 150k-token head L times)."""
    n_res, n = len(rec.resid), rec.resid[0].shape[0]
    flat = torch.stack(rec.resid[:-1]).reshape((n_res - 1) * n, -1)   # layer-major
    final = torch.log_softmax(lens_logits(mods, rec.resid[-1]), -1)
    top1 = final.argmax(-1)
    top5 = final.topk(5, -1).indices
    p_final = final.exp()
    kl = torch.empty(n_res * n)
    overlap = torch.empty(n_res * n)
    rank = torch.empty(n_res * n, dtype=torch.long)
    blocks = [(a, min(a + LENS_ROWS, (n_res - 1) * n)) for a in range(0, (n_res - 1) * n,
                                                                       LENS_ROWS)]
    for a, b in blocks + [((n_res - 1) * n, n_res * n)]:
        # the last layer's rows are the final distribution itself (its KL is exactly 0)
        lp = (final if a == (n_res - 1) * n else
              torch.log_softmax(lens_logits(mods, flat[a:b]), -1))
        j = torch.arange(a, b, device=lp.device) % n              # the position of each row
        kl[a:b] = (p_final[j] * (final[j] - lp)).sum(-1).clamp(min=0.0).cpu()
        mine = lp.topk(5, -1).indices
        overlap[a:b] = (mine.unsqueeze(-1) == top5[j].unsqueeze(-2)).any(-1).float() \
            .mean(-1).cpu()
        rank[a:b] = (lp > lp.gather(-1, top1[j][:, None])).sum(-1).cpu()
    return {"lens_kl": kl.reshape(n_res, n).numpy(),
            "lens_top5_overlap": overlap.reshape(n_res, n).numpy(),
            "final_token_rank": rank.reshape(n_res, n).numpy(), "top1": top1.cpu().numpy()}


def commitment_layer(ranks: np.ndarray) -> int:
    """First layer from which the final top-1 token stays the lens's top-1 (``ranks``: the rank
    of that token at layers 0 .. L, the last being 0)."""
    off = np.flatnonzero(ranks != 0)
    return int(off[-1]) + 1 if len(off) else 0


def depth_batch(mods: DecoderModules, items: list[DepthItem], pad_id: int, skip: bool = True
                ) -> tuple[dict[str, np.ndarray], list[int | None], list[dict]]:
    """Depth columns of every (item, position, layer), the commitment layer of each item, and
    the skip rows (one per item and skipped layer) when ``skip``."""
    dev = next(mods.lm_head.parameters()).device
    ids = pad_batch([it.ids for it in items], pad_id, dev)
    rows = torch.tensor([i for i, it in enumerate(items) for _ in it.positions], device=dev)
    pos = torch.tensor([p for it in items for p in it.positions], device=dev)
    rec = recorded_forward(mods, ids, rows, pos)
    cols = {**contributions(rec), **lens(mods, rec)}
    starts = np.cumsum([0] + [len(it.positions) for it in items])
    commit = [commitment_layer(cols["final_token_rank"][:, starts[i] + it.decisive])
              if it.decisive is not None else None for i, it in enumerate(items)]
    skips: list[dict] = []
    if skip:
        base_p = torch.softmax(lens_logits(mods, rec.resid[-1]), -1)
        base_c = [rec.contribution(e) for e in range(mods.n_layers)]
        top1 = torch.as_tensor(cols["top1"])
        for s in range(mods.n_layers):
            alt = recorded_forward(mods, ids, rows, pos, skip=s)
            p = torch.softmax(lens_logits(mods, alt.resid[-1]), -1)
            out_change = (p - base_p).norm(dim=-1).cpu()
            alt_top1 = p.argmax(-1).cpu()
            rel = torch.full((mods.n_layers, len(pos)), float("nan"))
            for e in range(s + 1, mods.n_layers):
                d = alt.contribution(e) - base_c[e]
                rel[e] = (d.norm(dim=-1) / _norm(base_c[e])).cpu()
            for i, it in enumerate(items):
                sl = slice(starts[i], starts[i + 1])
                by_layer = rel[:, sl].max(dim=1).values.numpy() if s + 1 < mods.n_layers \
                    else np.full(mods.n_layers, np.nan)
                later = by_layer[s + 1:]
                skips.append({
                    "item": i, "skipped_layer": s,
                    "later_change": float(np.max(later)) if len(later) else float("nan"),
                    "effect_by_layer": by_layer.astype(float).tolist(),
                    "out_change": float(out_change[sl].max()),
                    "decisive_flip": (bool(alt_top1[starts[i] + it.decisive]
                                           != top1[starts[i] + it.decisive])
                                      if it.decisive is not None else None)})
    return cols, commit, skips
