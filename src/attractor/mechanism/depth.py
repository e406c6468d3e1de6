"""Depth use of a rollout (after Csordas et al. 2025, "Do Language Models Use Their Depth
Efficiently?", robertcsordas/llm_effective_depth ``analyze_norms.py``, ``logitlens.py``,
``analyze_future_effects.py``, ``analyze_current_effects.py``).

With h_{l+1} = h_l + a_l + m_l, at each chosen position and decoder layer l:
    attn_rel  = ||a_l|| / ||h_l||            attn_cos  = cos(a_l, h_l)
    mlp_rel   = ||m_l|| / ||h_l + a_l||      mlp_cos   = cos(m_l, h_l + a_l)
    layer_rel = ||a_l + m_l|| / ||h_l||      layer_cos = cos(a_l + m_l, h_l)
(the reference's definitions: the MLP is measured against the stream it reads). The logit lens
reads every residual h_0 .. h_L through the final norm and the LM head: KL(p_l || p_L) (the
reference's direction, ``layer_lp.exp() * (layer_lp - final_lp)``), the overlap of the top-5
tokens with the final top-5, and the rank of the final top-1 token. The commitment layer at the
decisive position is the first l from which the lens's top-1 equals the final top-1 and stays
equal.

Layer skipping is the reference's ``merge_io``: layer s's output is replaced by its input at
positions 1 .. t-1, the first token (an attention sink) always keeps its output. Two variants,
as the paper's: ``current`` (t = None: every position but the first is skipped, effects read at
every position; ``analyze_current_effects.py``) and ``future`` (t drawn as
``test_future_max_effect`` draws it: every 8th token from 8 to n - 4, four of them at random;
effects read at positions >= t only, the max over the four t). For each layer e the relative
change ||c'_e - c_e|| / ||c_e|| of its contribution c_e = h_{e+1} - h_e (max over the read
positions, as the reference), the output change ||p' - p||_2 (max over the same positions) and,
our addition, whether the top-1 token at the decisive position flips (read only where that
position is among the read ones).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from attractor.capture.reforward import plan_batches
from attractor.mechanism.forward import lens_logits, pad_batch, recorded_forward
from attractor.mechanism.modules import DecoderModules

EPS = 1e-6  # the reference clamps norms at 1e-6
SKIP_MODES = ("current", "future", "off")
NO_SKIP_FRONT = 1   # merge_io's no_skip_front: the first token is never skipped
FUTURE_STRIDE, FUTURE_MARGIN, FUTURE_CHUNKS = 8, 4, 4   # test_future_max_effect's t


def future_starts(n_tokens: int, key: str) -> list[int]:
    """The reference's t for the future-effects variant: ``range(8, n - 4, 8)`` shuffled, the
    first four; seeded by ``key`` (the rollout) so a rerun draws the same."""
    ts = list(range(FUTURE_STRIDE, n_tokens - FUTURE_MARGIN, FUTURE_STRIDE))
    random.Random(key).shuffle(ts)
    return ts[:FUTURE_CHUNKS]


@dataclass
class DepthItem:
    """One rollout: token ids, the gathered token indices with their labels, the index (in
    that list) of the decisive position, if any, and the skip windows' t (None: the current-
    effects window, every position but the first)."""

    ids: list[int]
    positions: list[int]
    labels: list[tuple[str, int]]      # (position spec, occurrence)
    decisive: int | None
    starts: list[int | None] = field(default_factory=lambda: [None])


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


CACHED_PROBS = 1 << 28   # output probabilities kept across the skip sweep (1 GiB of float32)
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
        # KL(p_l || p_L), the reference's direction (logitlens.py: p_l * (log p_l - log p_L))
        kl[a:b] = (lp.exp() * (lp - final[j])).sum(-1).clamp(min=0.0).cpu()
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


def depth_batch(mods: DecoderModules, items: list[DepthItem], pad_id: int, skip: bool = True,
                max_tokens_per_batch: int = 8192
                ) -> tuple[dict[str, np.ndarray], list[int | None], list[dict]]:
    """Depth columns of every (item, position, layer), the commitment layer of each item, and
    the skip rows (one per item and skipped layer, windows from ``item.starts``) when ``skip``."""
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
        combos = [(i, t) for i, it in enumerate(items) for t in it.starts]
        per: dict[int, list[dict]] = {}
        for batch in plan_batches([len(items[i].ids) for i, _ in combos], max_tokens_per_batch):
            for k, eff in zip(batch, skip_effects(mods, [items[combos[k][0]] for k in batch],
                                                  [combos[k][1] for k in batch], pad_id)):
                per.setdefault(combos[k][0], []).append(eff)
        for i in range(len(items)):
            for s in range(mods.n_layers) if i in per else ():
                effs = [e[s] for e in per[i]]          # the reference's max over its t
                by_layer = np.max([e["by_layer"] for e in effs], axis=0)
                flips = [e["flip"] for e in effs if e["flip"] is not None]
                later = by_layer[s + 1:]
                skips.append({
                    "item": i, "skipped_layer": s,
                    "later_change": float(np.max(later)) if len(later) else float("nan"),
                    "effect_by_layer": by_layer.astype(float).tolist(),
                    "out_change": float(max(e["out"] for e in effs)),
                    "decisive_flip": any(flips) if flips else None})
    return cols, commit, skips


def skip_effects(mods: DecoderModules, items: list[DepthItem], ts: list[int | None],
                 pad_id: int) -> list[list[dict]]:
    """For each (item, t) and each skipped layer s: the per-layer relative change of the
    contributions (max over the read positions), the output change and the decisive flip."""
    dev = next(mods.lm_head.parameters()).device
    ids = pad_batch([it.ids for it in items], pad_id, dev)
    n_rows, width = ids.shape
    ar = torch.arange(width, device=dev)[None, :]
    lens_ = torch.tensor([len(it.ids) for it in items], device=dev)[:, None]
    t_ = torch.tensor([width if t is None else t for t in ts], device=dev)[:, None]
    valid = ar < lens_
    skip_mask = valid & (ar >= NO_SKIP_FRONT) & (ar < t_)
    read = valid & (ar >= torch.tensor([0 if t is None else t for t in ts], device=dev)[:, None])
    rows, pos = valid.nonzero(as_tuple=True)
    on = read[rows, pos]
    base = recorded_forward(mods, ids, rows, pos)
    base_c = [_layer_diff(base, e) for e in range(mods.n_layers)]
    dec_at = [(int(((rows == k) & (pos == it.positions[it.decisive])).nonzero()[0, 0])
               if it.decisive is not None and read[k, it.positions[it.decisive]] else None)
              for k, it in enumerate(items)]
    # the unskipped output, read once when it fits (rows x vocab floats), else once per layer
    vocab = mods.lm_head.weight.shape[0]
    base_p = _block_probs(mods, base.resid[-1]) if len(rows) * vocab <= CACHED_PROBS else None
    base_top = torch.cat([p.argmax(-1).cpu() for p in base_p] if base_p is not None else
                         [lens_logits(mods, base.resid[-1][a:a + LENS_ROWS]).argmax(-1).cpu()
                          for a in range(0, len(rows), LENS_ROWS)])
    out: list[list[dict]] = [[] for _ in items]
    for s in range(mods.n_layers):
        alt = recorded_forward(mods, ids, rows, pos, skip=s, skip_mask=skip_mask)
        rel = torch.stack([(_layer_diff(alt, e) - base_c[e]).norm(dim=-1) / _norm(base_c[e])
                           for e in range(mods.n_layers)]).cpu()
        change, alt_top = _output_change(mods, base_p, base.resid[-1], alt.resid[-1])
        for k in range(n_rows):
            sel = ((rows == k) & on).cpu()
            d = dec_at[k]
            out[k].append({"by_layer": rel[:, sel].max(dim=1).values.numpy(),
                           "out": float(change[sel].max()),
                           "flip": bool(alt_top[d] != base_top[d]) if d is not None else None})
    return out


def _layer_diff(rec, e: int) -> torch.Tensor:
    """c_e = h_{e+1} - h_e, as the reference's ``_residuals_to_diffs`` (0 where e is skipped)."""
    return rec.resid[e + 1].float() - rec.resid[e].float()


def _block_probs(mods: DecoderModules, h: torch.Tensor) -> list[torch.Tensor]:
    """The output distribution of residual states ``h`` in blocks of LENS_ROWS rows."""
    return [torch.softmax(lens_logits(mods, h[a:a + LENS_ROWS]), -1)
            for a in range(0, h.shape[0], LENS_ROWS)]


def _output_change(mods: DecoderModules, base_p: list[torch.Tensor] | None, base: torch.Tensor,
                   alt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """||softmax(alt) - softmax(base)||_2 per row (the base's blocks from ``base_p`` when
    cached) and the skipped run's top-1 tokens, one block of rows at a time."""
    change, alt_top = [], []
    for k, a in enumerate(range(0, base.shape[0], LENS_ROWS)):
        p = base_p[k] if base_p is not None else \
            torch.softmax(lens_logits(mods, base[a:a + LENS_ROWS]), -1)
        q = torch.softmax(lens_logits(mods, alt[a:a + LENS_ROWS]), -1)
        change.append((q - p).norm(dim=-1).cpu())
        alt_top.append(q.argmax(-1).cpu())
    return torch.cat(change), torch.cat(alt_top)
