"""DeepConf's online rule: its threshold and who votes with what weight (reference:
facebookresearch/deepconf, ``deepconf/wrapper.py``, ``_deepthink_online`` and
``_perform_basic_voting``), shared by the offline replay (``attractor early-stop``), the online
sampler (``sample --early-stop deepconf``, whose vLLM cut is relabelled with :func:`first_below`)
and the analysis of an online run.

- The first W traces (warm-up) run in full; the threshold is a percentile of their lowest group
  confidences. attractor's ``percentile=P`` is that percentile itself: P=90 keeps the top 10%
  (DeepConf-low), P=10 the top 90% (DeepConf-high); the reference's ``confidence_percentile``
  is 100 - P.
- A later trace stops at the first full window whose confidence falls below the threshold (one
  group, its whole length, for a trace shorter than the window) and never votes.
- Voting: a warm-up trace votes only if its lowest group confidence is at least the threshold;
  every voting trace (warm-up or later) weighs its lowest group confidence; traces without an
  answer never vote.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from attractor.metrics.confidence import group_confidences, lowest_group


def first_below(conf: np.ndarray, window: int, threshold: float) -> int | None:
    """Token count at which the sliding-window confidence first falls below ``threshold``
    (the trace stops there), or None if it never does."""
    groups = group_confidences(conf, window)
    below = np.flatnonzero(groups < threshold)
    if len(below) == 0:
        return None
    return int(below[0]) + min(window, len(conf))


def threshold(warm_confidences: Sequence, percentile: float, window: int) -> float | None:
    """The P-th percentile of the warm-up traces' lowest group confidences; an empty trace
    counts as 0, as the reference's ``compute_least_grouped`` returns ``[0]`` for it (None
    without warm-up traces)."""
    lows = [lowest_group(c, window) if len(c) else 0.0 for c in warm_confidences]
    lows = [x for x in lows if not np.isnan(x)]
    return float(np.percentile(lows, percentile)) if lows else None


def voting_weights(confidences: Sequence, answered: Sequence[bool], stopped: Sequence[bool],
                   warmup: int, thr: float | None, window: int) -> np.ndarray:
    """Each trace's vote weight (0: it does not vote), traces in sample order."""
    w = np.zeros(len(confidences))
    for i, (c, has, cut) in enumerate(zip(confidences, answered, stopped)):
        low = lowest_group(c, window)
        if not has or cut or np.isnan(low):
            continue
        if i < warmup and thr is not None and low < thr:
            continue
        w[i] = low
    return w
