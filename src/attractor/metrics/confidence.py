"""DeepConf confidence signals of one trace from its stored token confidences (Fu et al. 2025,
"Deep Think with Confidence"; reference code facebookresearch/deepconf, ``deepconf/utils.py``).

Token confidence C_i = -mean of the top-20 log-probabilities at position i (the engines store
it; see :mod:`attractor.engines.confidence`). Group confidence is the mean token confidence over
a sliding window of ``window`` tokens (stride 1; DeepConf uses 2048). A trace shorter than the
window has one group, its whole length, as in the reference's ``compute_least_grouped``.

- ``conf_mean``: mean token confidence of the trace;
- ``conf_lowest_group``: the lowest group confidence (the reference's ``min_conf``);
- ``conf_bottom10``: mean of the lowest floor(10% of groups) group confidences (at least one),
  the reference's ``calculate_bottom_window_confidence``;
- ``conf_tail``: mean token confidence over the last ``tail`` tokens (2048 in the reference,
  independent of the window).
"""
from __future__ import annotations

import numpy as np


def group_confidences(conf: np.ndarray, window: int) -> np.ndarray:
    """Sliding-window means (stride 1) of token confidences; one group if the trace is short."""
    n = len(conf)
    if n == 0:
        return np.array([])
    w = min(window, n)
    cs = np.concatenate([[0.0], np.cumsum(conf, dtype=np.float64)])
    return (cs[w:] - cs[:-w]) / w


def lowest_group(conf, window: int) -> float:
    """DeepConf's ``min_conf`` of one trace (NaN for an empty trace)."""
    groups = group_confidences(np.asarray(conf if conf is not None else [], float), window)
    return float(groups.min()) if len(groups) else float("nan")


def deepconf_signals(conf, window: int = 2048, tail: int = 2048) -> dict[str, float]:
    """``conf_mean``, ``conf_lowest_group``, ``conf_bottom10`` and ``conf_tail`` of a trace."""
    c = np.asarray(conf if conf is not None else [], dtype=np.float64)
    if len(c) == 0:
        nan = float("nan")
        return {"conf_mean": nan, "conf_lowest_group": nan, "conf_bottom10": nan,
                "conf_tail": nan}
    groups = group_confidences(c, window)
    k = max(1, int(0.1 * len(groups)))
    return {"conf_mean": float(c.mean()), "conf_lowest_group": float(groups.min()),
            "conf_bottom10": float(np.sort(groups)[:k].mean()),
            "conf_tail": float(c[-tail:].mean())}
