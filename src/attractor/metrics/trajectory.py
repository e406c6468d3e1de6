"""Trajectory signals of one trace from its chunk-mean hidden states (as in "Tracing the
Traces"): with h_1 .. h_m the means of consecutive completion chunks at one layer,

- ``net_change``: |h_m - h_1|, how far the representation ends from where it began;
- ``cumulative_change``: sum_j |h_{j+1} - h_j|, the length of the path;
- ``aligned_change``: mean cosine between consecutive steps (h_{j+1} - h_j), 1 for a straight
  path, about 0 for a wandering one (NaN with fewer than three chunks).

All are NaN for traces with fewer than two chunks.
"""
from __future__ import annotations

import numpy as np


def trajectory_signals(h: np.ndarray) -> dict[str, float]:
    """Signals of a (m, d) sequence of chunk means."""
    nan = float("nan")
    if h.shape[0] < 2:
        return {"net_change": nan, "cumulative_change": nan, "aligned_change": nan}
    steps = np.diff(h.astype(np.float64), axis=0)
    norms = np.linalg.norm(steps, axis=1)
    aligned = nan
    if len(steps) >= 2:
        unit = steps / np.clip(norms[:, None], 1e-12, None)
        aligned = float((unit[1:] * unit[:-1]).sum(1).mean())
    return {"net_change": float(np.linalg.norm(h[-1] - h[0])),
            "cumulative_change": float(norms.sum()), "aligned_change": aligned}
