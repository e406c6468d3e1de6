"""Internal consistency (Xie et al. 2024, "Calibrating Reasoning in Language Models with Internal
Consistency"; reference code zhxieml/internal-consistency, ``extract.py`` and
``src/evaluation/calibrate.py``, ``cal_agreement_accs``).

At the position that predicts the answer label (attractor's ``decisive`` position), every layer
is read through the logit lens (final norm, then LM head; the last layer's hidden state is
already normed) and restricted to the task's K answer labels: p[l, k] = softmax_k(logit[l, label_k]).
Then, over the whole population of rollouts:

1. per layer l and label k, the (K-1)/K quantile q[l, k] of p[., l, k] (linear interpolation,
   as ``torch.quantile``);
2. calibrated score c[s, l, k] = 1 if p > q, 1/K if p == q, else 0;
3. the final prediction of rollout s is argmax_k c[s, L, k] (first index on ties);
4. ``consistency`` = sum_l c[s, l, final_s] (the reference's ``aoc``) and ``consistency_frac``
   = that sum over the number of layers (the reference's histogram axis).

The layers are all hidden states the capture kept, layer 0 (embeddings) included as in the
reference's ``hidden[:-1]`` plus the final logits; the last layer must be among them.
"""
from __future__ import annotations

import numpy as np


def label_probs(logits: np.ndarray) -> np.ndarray:
    """(..., K) lens logits of the K label tokens -> their softmax (the restricted lens)."""
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def calibrated_consistency(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (S, L, K) label probabilities of S rollouts at L layers (the last is the final
    layer): (consistency (S,), consistency_frac (S,), final calibrated prediction (S,))."""
    p = np.asarray(probs, dtype=np.float64)
    s, n_layers, k = p.shape
    q = np.quantile(p, (k - 1) / k, axis=0, keepdims=True)
    scores = (p > q).astype(np.float64) + (p == q) / k
    final = scores[:, -1].argmax(-1)
    agree = np.take_along_axis(scores, final[:, None, None].repeat(n_layers, 1), axis=2)[..., 0]
    aoc = agree.sum(1)
    return aoc, aoc / n_layers, final
