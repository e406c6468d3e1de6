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


def geometry(x: torch.Tensor, correct: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics for a stack (L, S, d) of one question's vectors at L layers."""
    s = x.shape[1]
    out = {"n_samples": np.full(x.shape[0], s), "tightness": mean_pairwise_cosine(x).numpy()}
    c = torch.as_tensor(correct, dtype=torch.bool)
    out["tightness_correct"] = mean_pairwise_cosine(x[:, c]).numpy()
    out["tightness_wrong"] = mean_pairwise_cosine(x[:, ~c]).numpy()
    xc = x - x.mean(1, keepdim=True)
    if s > 1:
        out["cov_trace"] = (xc.pow(2).sum((1, 2)) / (s - 1)).numpy()
        gram = xc @ xc.transpose(1, 2)
        ev = torch.linalg.eigvalsh(gram.double()).clamp_min(0)
        out["pc1_explained"] = (ev[:, -1] / ev.sum(-1).clamp_min(1e-30)).float().numpy()
    else:
        out["cov_trace"] = np.full(x.shape[0], np.nan)
        out["pc1_explained"] = np.full(x.shape[0], np.nan)
    out["mean_norm"] = x.norm(dim=-1).mean(-1).numpy()
    return out


def iter_question_vectors(latent_store, index: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
    """Per question: its index rows and their vectors (float32), read through memory maps."""
    maps: dict[str, np.ndarray] = {}
    for qid, rows in index.groupby("question_id", sort=False):
        parts = []
        for shard, sub in rows.groupby("shard", sort=False):
            if shard not in maps:
                maps[shard] = latent_store.memmap(shard)
            order = np.argsort(sub["row"].to_numpy())
            r = sub["row"].to_numpy()[order]
            block = np.asarray(maps[shard][r], dtype=np.float32)
            parts.append((sub.index.to_numpy()[order], block))
        pos = np.concatenate([p[0] for p in parts])
        vecs = np.concatenate([p[1] for p in parts])
        lookup = pd.Series(np.arange(len(pos)), index=pos)
        yield qid, rows, vecs[lookup.loc[rows.index].to_numpy()]


def latent_table(latent_store, correct_of: dict[tuple[str, int], bool]) -> pd.DataFrame:
    """``metrics/latent.parquet``: one row per question x layer x position x occurrence."""
    index = latent_store.index().to_pandas()
    out = []
    for qid, rows, vecs in iter_question_vectors(latent_store, index):
        for (pos, occ), grp in rows.groupby(["position", "occurrence"], sort=False):
            layers = sorted(grp["layer"].unique())
            per_layer = [grp[grp["layer"] == layer].sort_values("sample_id") for layer in layers]
            samples = per_layer[0]["sample_id"].to_numpy()
            if any(len(p) != len(samples) for p in per_layer):
                continue  # a layer without every sample cannot be stacked; not produced by capture
            loc = {i: k for k, i in enumerate(rows.index)}
            stack = torch.from_numpy(np.stack([vecs[[loc[i] for i in p.index]] for p in per_layer]))
            correct = np.array([correct_of.get((qid, int(s)), False) for s in samples])
            g = geometry(stack, correct)
            for li, layer in enumerate(layers):
                out.append({"question_id": qid, "layer": int(layer), "position": pos,
                            "occurrence": int(occ), **{k: float(v[li]) for k, v in g.items()},
                            "n_correct": int(correct.sum())})
    return pd.DataFrame(out)
