"""Weighted voting over k-subsets of a question's samples.

A method turns the samples of a subset into one answer: majority, or a vote in which each
sample's answer class gets the sample's weight (DeepConf confidences, with optional top-eta%
filtering; trajectory stability; logit-lens consistency; latent tightness). Samples without an
answer abstain; ties are split evenly; a subset with no voters counts as wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from attractor.metrics.answers import vote_correct  # noqa: F401  (the one vote; re-exported)


@dataclass
class VoteQuestion:
    """What voting needs of one question: per sample its answer class, correctness, tokens and
    signals, plus the pairwise cosine matrix of its latents (for tightness weights)."""

    classes: list[str | None]
    correct_of: dict[str, bool]
    tokens: np.ndarray
    signals: dict[str, np.ndarray]
    cosine: np.ndarray | None = None


Weigher = Callable[[VoteQuestion, np.ndarray], np.ndarray | None]


def signal_weigher(name: str, higher_is_better: bool = True, eta: float | None = None) -> Weigher:
    """Weights from a per-sample signal (DeepConf weights a vote by the trace's confidence; a
    signal with values <= 0, or one where lower is better, is shifted to be positive).

    ``eta`` is DeepConf's filtering (reference ``filter_top_confidence``): among the samples of
    the subset that *have an answer*, keep those whose signal is at least the
    (100 - eta)-th percentile (numpy's linear interpolation) of theirs; the rest get weight 0."""
    def weigh(q: VoteQuestion, idx: np.ndarray) -> np.ndarray | None:
        if name not in q.signals:
            return None
        s = q.signals[name][idx].astype(float)
        if np.isnan(s).all():
            return None
        s = s if higher_is_better else -s
        s = np.where(np.isnan(s), np.nanmin(s), s)
        w = s - s.min() + 1e-6 if (s <= 0).any() else s.copy()
        if eta is not None:
            answered = np.array([q.classes[i] is not None for i in idx])
            if not answered.any():
                return np.zeros(len(idx))
            cut = np.percentile(s[answered], 100 - eta)
            w = np.where(answered & (s >= cut), w, 0.0)
        return w
    return weigh


def tightness_weigher(q: VoteQuestion, idx: np.ndarray) -> np.ndarray | None:
    """Each sample weighted by its mean cosine to the other samples of the subset (samples in
    the dense latent cluster count more: the seed's stability-aware ensemble)."""
    if q.cosine is None or len(idx) < 2:
        return None
    sub = q.cosine[np.ix_(idx, idx)]
    w = (sub.sum(1) - 1.0) / (len(idx) - 1)
    return w - w.min() + 1e-6


def evaluate(questions: list[VoteQuestion], methods: dict[str, Weigher | None], ks: list[int],
             draws: int = 300, seed: int = 0,
             on_question: Callable[[], None] | None = None
             ) -> dict[tuple[str, int], np.ndarray]:
    """Per (method, k): the per-question expected accuracy over ``draws`` random k-subsets
    (the same subsets for every method). ``None`` as a weigher means plain majority.
    ``on_question()`` follows each question (progress)."""
    rng = np.random.default_rng(seed)
    out = {(m, k): np.full(len(questions), np.nan) for m in methods for k in ks}
    tokens = {k: np.zeros(len(questions)) for k in ks}
    for qi, q in enumerate(questions):
        if on_question is not None and qi:
            on_question()
        n = len(q.classes)
        for k in ks:
            if k > n:
                continue
            subsets = [np.arange(n)] if k == n else [rng.choice(n, k, replace=False)
                                                     for _ in range(draws)]
            acc = {m: 0.0 for m in methods}
            valid = {m: True for m in methods}
            for idx in subsets:
                cls = [q.classes[i] for i in idx]
                tokens[k][qi] += q.tokens[idx].sum() / len(subsets)
                for m, weigh in methods.items():
                    w = np.ones(len(idx)) if weigh is None else weigh(q, idx)
                    if w is None:
                        valid[m] = False
                        continue
                    acc[m] += vote_correct(cls, w, q.correct_of)
            for m in methods:
                if valid[m]:
                    out[(m, k)][qi] = acc[m] / len(subsets)
    if on_question is not None and questions:
        on_question()
    out.update({("__tokens__", k): v for k, v in tokens.items()})
    return out
