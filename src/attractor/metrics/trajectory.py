"""Latent-Trajectory signals of one trace ("Tracing the Traces", Vilas et al. 2025; reference
code: martinagvilas/LT-signals, ``src/internal_representations/compute_internal_representations.py``,
``compute_lt_signals``).

With h_1 .. h_N the means of consecutive completion chunks at one layer (the paper's chunk is 500
tokens; attractor's ``chunk:W`` position, the last shorter chunk included as in the reference)
and S = N - 1 steps:

- ``net_change`` = ||h_N - h_1|| / S: the overall drift, per step (so it is not a length proxy);
- ``cumulative_change`` = sum_n ||h_n - h_{n-1}||: the length of the path;
- ``aligned_change`` = mean_n cos(h_n - h_{n-1}, h_N - h_1): how much each step moves along the
  overall drift (a cosine with a zero vector counts as 0, as torch's ``cosine_similarity`` does).

All three are NaN for a trace with fewer than two chunks. The per-trace value the paper scores
is the mean over the transformer layers (``hidden_states[1:]``, never the embedding output):
see :func:`layer_average`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

SIGNALS = ("net_change", "cumulative_change", "aligned_change")
_EPS = 1e-8  # torch.nn.functional.cosine_similarity's default eps


def trajectory_signals(h: np.ndarray) -> dict[str, float]:
    """The three signals of a (N, d) sequence of chunk means."""
    nan = float("nan")
    if h.shape[0] < 2:
        return {k: nan for k in SIGNALS}
    x = h.astype(np.float64)
    drift = x[-1] - x[0]
    steps = np.diff(x, axis=0)
    norms = np.linalg.norm(steps, axis=1)
    drift_norm = float(np.linalg.norm(drift))
    cos = (steps @ drift) / np.maximum(norms * drift_norm, _EPS)
    return {"net_change": drift_norm / len(steps),
            "cumulative_change": float(norms.sum()),
            "aligned_change": float(cos.mean())}


def layer_average(per_layer: Mapping[int, dict[str, float]]) -> dict[str, float]:
    """Mean of each signal over the captured transformer layers (layer >= 1; layer 0, the
    embedding output, is left out as in the reference). NaN where no layer defines it."""
    out = {}
    for k in SIGNALS:
        vals = [s[k] for layer, s in per_layer.items() if layer >= 1 and not np.isnan(s[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out
