"""``metrics/samples.parquet``: one row per rollout with its stability signals.

- DeepConf confidences from the stored token confidences (see :mod:`attractor.metrics.confidence`);
- mean token entropy and log-probability of the trace;
- Latent-Trajectory signals over chunk means (:mod:`attractor.metrics.trajectory`), per captured
  layer (``traj_<signal>@L<layer>``) and averaged over the transformer layers (``traj_<signal>``);
  with several ``chunk:W`` sizes captured, each size keeps its own columns
  (``traj_<signal>[chunk:W]`` and ``traj_<signal>[chunk:W]@L<layer>``);
- internal consistency (:mod:`attractor.metrics.consistency`) at the ``decisive`` position, where
  the task has a fixed label set (ProsQA's two options, ProntoQA's True/False): ``consistency``
  (calibrated agreements with the final layer, summed over layers) and ``consistency_frac``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from attractor.metrics.confidence import deepconf_signals
from attractor.metrics.consistency import calibrated_consistency, label_probs
from attractor.metrics.hidden import iter_question_vectors
from attractor.metrics.trajectory import layer_average, trajectory_signals


def trace_signals(rollouts: pd.DataFrame, window: int = 2048, tail: int = 2048) -> pd.DataFrame:
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
                     **deepconf_signals(r.token_confidences, window=window, tail=tail)})
    return pd.DataFrame(rows)


def _traj_name(signal: str, chunk: str, several: bool, layer: int | None = None) -> str:
    name = f"traj_{signal}" + (f"[{chunk}]" if several else "")
    return name if layer is None else f"{name}@L{layer}"


def latent_signals(hidden_store, lens: Callable | None = None,
                   candidates: dict[str, list[int]] | None = None,
                   final_layer: int | None = None) -> pd.DataFrame:
    """Trajectory signals (from ``chunk:W`` latents) and internal consistency (from
    ``decisive`` latents) per rollout, streamed one question at a time. ``lens(h, layers, ids)``
    maps (n, d) hidden states to (n, len(ids)) logits of the tokens ``ids``; ``candidates``
    maps a question id to its label tokens (questions without one get no consistency);
    ``final_layer`` is the model's last layer, which consistency needs."""
    index = hidden_store.index().to_pandas()
    if index.empty:
        return pd.DataFrame(columns=["question_id", "sample_id"])
    chunks = sorted({p for p in index["position"].unique() if p.startswith("chunk:")},
                    key=lambda p: int(p.split(":")[1]))
    several = len(chunks) > 1
    do_lens = lens is not None and bool(candidates)
    wanted = index["position"].isin(chunks) | (do_lens & (index["position"] == "decisive"))
    index = index[wanted]
    out: dict[tuple[str, int], dict[str, Any]] = {}
    probs: dict[tuple[str, int], np.ndarray] = {}
    for qid, rows, vecs in iter_question_vectors(hidden_store, index):
        loc = {i: k for k, i in enumerate(rows.index)}
        for (sid, pos), grp in rows.groupby(["sample_id", "position"], sort=False):
            rec = out.setdefault((qid, int(sid)), {"question_id": qid, "sample_id": int(sid)})
            if pos.startswith("chunk:"):
                per_layer = {}
                for layer, g in grp.groupby("layer"):
                    g = g.sort_values("occurrence")
                    sig = trajectory_signals(vecs[[loc[i] for i in g.index]])
                    for k, v in sig.items():
                        rec[_traj_name(k, pos, several, int(layer))] = v
                    per_layer[int(layer)] = sig
                for k, v in layer_average(per_layer).items():
                    rec[_traj_name(k, pos, several)] = v
            elif candidates and qid in candidates:
                g = grp.sort_values("layer")
                layers = g["layer"].to_numpy()
                if final_layer is not None and layers[-1] != final_layer:
                    continue
                logits = lens(torch.from_numpy(vecs[[loc[i] for i in g.index]]), layers,
                              candidates[qid])
                probs[(qid, int(sid))] = label_probs(logits)
    if probs:
        keys = list(probs)
        aoc, frac, _ = calibrated_consistency(np.stack([probs[k] for k in keys]))
        for key, a, f in zip(keys, aoc, frac):
            out[key]["consistency"] = float(a)
            out[key]["consistency_frac"] = float(f)
    return pd.DataFrame(list(out.values()))


def make_logit_lens(model):
    """A callable (hidden (n, d), layers, token ids) -> (n, len(ids)) logits of those tokens: the
    final norm (for layers before the last, whose vectors are pre-norm) and the LM head, as the
    logit lens reads them."""
    from attractor.capture.reforward import decoder_parts

    _, _, blocks, norm = decoder_parts(model)
    head = model.get_output_embeddings()
    n_layers = len(blocks)
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype

    @torch.inference_mode()
    def lens(h: torch.Tensor, layers: np.ndarray, ids: list[int]) -> np.ndarray:
        h = h.to(dev, dtype)
        pre = torch.as_tensor(layers < n_layers, device=dev)
        h = torch.where(pre[:, None], norm(h), h)
        return head(h)[:, ids].float().cpu().numpy()

    return lens
