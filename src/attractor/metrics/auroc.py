"""AUROC by ranks (Mann-Whitney U) and its bootstrap interval, vectorised over all draws.

``auroc`` equals scikit-learn's ``roc_auc_score`` (ties count one half). The interval resamples
*clusters* with replacement: for a sample-level target the clusters are the questions, since a
question's samples are correlated (resampling samples independently makes the interval far too
narrow: a question-level noise signal's 95% interval covered 0.5 in 9 of 20 trials); for a
question-level target every question is its own cluster, the ordinary bootstrap. A draw is a
vector of cluster multiplicities, so the AUROC of every draw is one weighted Mann-Whitney sum over
the scores sorted once; draws are processed in blocks to bound memory. Our own code because
scikit-learn scores one draw per call (6,000 calls took most of ``analyze``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_BLOCK_CELLS = 4_000_000  # draws x samples held at once


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (None when one class is absent)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``weights`` (draws, n): sample i counts ``weights[r, i]`` times.
    NaN for a draw without both classes."""
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order].astype(bool), weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_auroc(scores: Sequence[float], labels: Sequence[bool],
                    clusters: Sequence | None = None, reps: int = 500, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling ``clusters`` (one id per sample;
    None: every sample is its own cluster). (NaN, NaN) when no draw has both classes."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    if clusters is None:
        codes = np.arange(len(s))
    else:
        _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    if n_clusters == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(1, len(s)))
    draws = []
    for start in range(0, reps, block):
        k = min(block, reps - start)
        counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=k)
        draws.append(weighted_auroc(s, y, counts[:, codes].astype(float)))
    a = np.concatenate(draws)
    a = a[~np.isnan(a)]
    if len(a) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(a, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
