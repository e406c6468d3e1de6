"""Latent geometry of each question's samples, streamed one question at a time.

For every question x layer x position (x occurrence, for multi-vector positions), over the
question's samples: ``tightness`` (mean pairwise cosine similarity, self-pairs excluded), the
same over correct and over wrong samples, the trace of the sample covariance, the share of
variance on the first principal component, and the mean norm.

Mean pairwise cosine uses ||sum_i x_i/|x_i| ||^2 = S + sum_{i != j} cos(x_i, x_j), so it costs
O(S d), not the O(S^2 d) of a Gram matrix; only the PC1 share needs the S x S Gram matrix, done
as one batched eigen-decomposition over layers.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch


def mean_pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over distinct pairs of rows, batched: (..., S, d) -> (...).
    NaN when S < 2."""
    s = x.shape[-2]
    if s < 2:
        return torch.full(x.shape[:-2], float("nan"))
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    total = xn.sum(-2).pow(2).sum(-1)
    return (total - s) / (s * (s - 1))


def top_eigenvalue(gram: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """Largest eigenvalue of each symmetric PSD matrix in a batch (B, S, S), by power iteration
    with a Rayleigh quotient: a few batched mat-vecs instead of B full eigen-decompositions."""
    v = torch.ones(gram.shape[0], gram.shape[1], 1, dtype=gram.dtype) / gram.shape[1] ** 0.5
    v = v + 1e-3 * torch.arange(gram.shape[1], dtype=gram.dtype).view(1, -1, 1)
    for _ in range(iters):
        v = gram @ v
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (v.transpose(1, 2) @ gram @ v).view(-1).clamp_min(0)


def geometry(x: torch.Tensor, correct: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics for a stack (L, S, d) of one question's vectors at L layers."""
    s = x.shape[1]
    out = {"n_samples": np.full(x.shape[0], s), "tightness": mean_pairwise_cosine(x).numpy()}
    c = torch.as_tensor(correct, dtype=torch.bool)
    out["tightness_correct"] = mean_pairwise_cosine(x[:, c]).numpy()
    out["tightness_wrong"] = mean_pairwise_cosine(x[:, ~c]).numpy()
    xc = x - x.mean(1, keepdim=True)
    if s > 1:
        total = xc.pow(2).sum((1, 2))
        out["cov_trace"] = (total / (s - 1)).numpy()
        gram = xc @ xc.transpose(1, 2)
        out["pc1_explained"] = (top_eigenvalue(gram) / total.clamp_min(1e-30)).numpy()
    else:
        out["cov_trace"] = np.full(x.shape[0], np.nan)
        out["pc1_explained"] = np.full(x.shape[0], np.nan)
    out["mean_norm"] = x.norm(dim=-1).mean(-1).numpy()
    return out


def iter_question_vectors(hidden_store, index: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
    """Per question: its index rows and their vectors (float32, in index-row order), read through
    memory maps opened per question, so resident memory stays about one question's vectors."""
    for qid, rows in index.groupby("question_id", sort=False):
        out = np.empty((len(rows), 0), dtype=np.float32)
        pos = np.arange(len(rows))
        shards = rows["shard"].to_numpy()
        row_ids = rows["row"].to_numpy()
        for shard in pd.unique(shards):
            sel = pos[shards == shard]
            order = np.argsort(row_ids[sel])
            mm = hidden_store.memmap(shard)
            block = np.asarray(mm[row_ids[sel][order]], dtype=np.float32)
            del mm
            if out.shape[1] == 0:
                out = np.empty((len(rows), block.shape[1]), dtype=np.float32)
            out[sel[order]] = block
        yield qid, rows, out


def latent_table(hidden_store, correct_of: dict[tuple[str, int], bool]) -> pd.DataFrame:
    """``metrics/latent.parquet``: one row per question x layer x position x occurrence."""
    index = hidden_store.index().to_pandas()
    out = []
    for qid, rows, vecs in iter_question_vectors(hidden_store, index):
        rows = rows.assign(_k=np.arange(len(rows)))
        for (pos, occ), grp in rows.groupby(["position", "occurrence"], sort=False):
            grp = grp.sort_values(["layer", "sample_id"])
            layers = grp["layer"].unique()
            samples = grp["sample_id"].unique()
            if len(grp) != len(layers) * len(samples):
                continue  # a layer without every sample cannot be stacked; not produced by capture
            stack = torch.from_numpy(vecs[grp["_k"].to_numpy()].reshape(len(layers), len(samples),
                                                                        -1))
            samples = np.sort(samples)
            correct = np.array([correct_of.get((qid, int(s)), False) for s in samples])
            g = geometry(stack, correct)
            for li, layer in enumerate(layers):
                out.append({"question_id": qid, "layer": int(layer), "position": pos,
                            "occurrence": int(occ), **{k: float(v[li]) for k, v in g.items()},
                            "n_correct": int(correct.sum())})
    return pd.DataFrame(out)
