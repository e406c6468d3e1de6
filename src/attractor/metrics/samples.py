"""``metrics/samples.parquet``: one row per rollout with its stability signals.

- DeepConf confidences from the stored token confidences (see :mod:`attractor.metrics.confidence`);
- mean token entropy and log-probability of the trace;
- trajectory signals over chunk means (:mod:`attractor.metrics.trajectory`), per captured layer
  (``traj_<signal>@L<layer>``) and averaged over layers (``traj_<signal>``);
- internal consistency (logit lens): at the ``answer`` position, the number of layers whose
  logit-lens top token equals the final layer's (``consistency``) and that count over the
  layers compared (``consistency_frac``). Defined where the answer's first token decides the
  answer (ProsQA, ProntoQA); NaN elsewhere.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from attractor.metrics.confidence import deepconf_signals
from attractor.metrics.latent import iter_question_vectors
from attractor.metrics.trajectory import trajectory_signals

CONSISTENCY_KINDS = ("prosqa", "prontoqa")


def trace_signals(rollouts: pd.DataFrame, window: int = 2048) -> pd.DataFrame:
    """Token-level signals of every rollout (no latents needed)."""
    rows = []
    for r in rollouts.itertuples(index=False):
        ent = np.asarray(r.token_entropies if r.token_entropies is not None else [], float)
        lp = np.asarray(r.token_logprobs if r.token_logprobs is not None else [], float)
        rows.append({"question_id": r.question_id, "sample_id": int(r.sample_id),
                     "correct": bool(r.correct) if r.correct is not None else False,
                     "n_tokens": r.n_tokens,
                     "mean_token_entropy": float(ent.mean()) if len(ent) else float("nan"),
                     "mean_token_logprob": float(lp.mean()) if len(lp) else float("nan"),
                     **deepconf_signals(r.token_confidences, window=window, tail=window)})
    return pd.DataFrame(rows)


def latent_signals(latent_store, lens=None, kind: str = "math") -> pd.DataFrame:
    """Trajectory signals (from ``chunk:W`` latents) and logit-lens consistency (from
    ``answer`` latents) per rollout, streamed one question at a time. ``lens`` is a callable
    mapping (n, d) hidden states to top token ids, or None to skip consistency."""
    index = latent_store.index().to_pandas()
    if index.empty:
        return pd.DataFrame(columns=["question_id", "sample_id"])
    wanted = index["position"].str.startswith("chunk:") | (index["position"] == "answer")
    index = index[wanted]
    out: dict[tuple[str, int], dict[str, Any]] = {}
    do_lens = lens is not None and kind in CONSISTENCY_KINDS
    for qid, rows, vecs in iter_question_vectors(latent_store, index):
        loc = {i: k for k, i in enumerate(rows.index)}
        for (sid, pos), grp in rows.groupby(["sample_id", "position"], sort=False):
            rec = out.setdefault((qid, int(sid)), {"question_id": qid, "sample_id": int(sid)})
            if pos.startswith("chunk:"):
                per_layer = []
                for layer, g in grp.groupby("layer"):
                    g = g.sort_values("occurrence")
                    sig = trajectory_signals(vecs[[loc[i] for i in g.index]])
                    for k, v in sig.items():
                        rec[f"traj_{k}@L{int(layer)}"] = v
                    per_layer.append(sig)
                for k in per_layer[0]:
                    vals = [s[k] for s in per_layer if not np.isnan(s[k])]
                    rec[f"traj_{k}"] = float(np.mean(vals)) if vals else float("nan")
            elif do_lens:
                g = grp.sort_values("layer")
                top = lens(torch.from_numpy(vecs[[loc[i] for i in g.index]]),
                           g["layer"].to_numpy())
                final = top[-1]
                agree = int((top[:-1] == final).sum())
                rec["consistency"] = agree
                rec["consistency_frac"] = agree / max(1, len(top) - 1)
    return pd.DataFrame(list(out.values()))


def make_logit_lens(model):
    """A callable (hidden (n, d), layers) -> top token ids: the final norm (for layers before
    the last, whose vectors are pre-norm) and the LM head, as the logit lens reads them."""
    from attractor.capture.reforward import decoder_parts

    _, _, blocks, norm = decoder_parts(model)
    head = model.get_output_embeddings()
    n_layers = len(blocks)
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype

    @torch.inference_mode()
    def lens(h: torch.Tensor, layers: np.ndarray) -> np.ndarray:
        h = h.to(dev, dtype)
        pre = torch.as_tensor(layers < n_layers, device=dev)
        h = torch.where(pre[:, None], norm(h), h)
        return head(h).argmax(-1).cpu().numpy()

    return lens
