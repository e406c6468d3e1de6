"""DeepConf confidence signals of one trace from its stored token confidences.

Group confidence is the mean token confidence over a sliding window of ``window`` tokens
(DeepConf uses 2048). A trace shorter than the window has one group, its whole length -- so the
signals are defined for every trace (DeepConf's own early stop silently cannot fire on traces
shorter than its window).
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


def deepconf_signals(conf, window: int = 2048, tail: int = 2048) -> dict[str, float]:
    """``conf_mean`` (average trace confidence), ``conf_lowest_group``, ``conf_bottom10``
    (mean of the lowest 10% of groups), ``conf_tail`` (mean over the last ``tail`` tokens)."""
    c = np.asarray(conf if conf is not None else [], dtype=np.float64)
    if len(c) == 0:
        nan = float("nan")
        return {"conf_mean": nan, "conf_lowest_group": nan, "conf_bottom10": nan,
                "conf_tail": nan}
    groups = group_confidences(c, window)
    k = max(1, int(np.ceil(0.1 * len(groups))))
    return {"conf_mean": float(c.mean()), "conf_lowest_group": float(groups.min()),
            "conf_bottom10": float(np.sort(groups)[:k].mean()),
            "conf_tail": float(c[-tail:].mean())}
