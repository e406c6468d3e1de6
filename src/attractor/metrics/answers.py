"""Answer-stability metrics of one question's samples, and their summary over questions.

Conventions: a sample with no extractable answer (``answer_class`` null) forms its own class
(label ``None``) in entropy, top-1 share and unique-answer counts, and never wins a vote (it
abstains; with no voters the vote has no answer and is wrong). Entropy is in nats, with bits
beside it.

Voting, written once here for the whole package (majority, weighted, TTRL's reward, ...): a sample
votes with its weight (1 unweighted) when its class is not null and its weight is finite and
> 0. **The winner** (:func:`majority_class`) has the largest total weight; a tie goes to the
class voted first (the DeepConf reference's max over an insertion-ordered dict; lm-evaluation-
harness's ``Counter.most_common``). **The accuracy of a vote** over draws of samples
(:func:`vote_correct`, :func:`maj_at_k`) splits a tie evenly among the tied classes: the
expectation under a random tie-break, since which tied class a random subset saw first is
itself random.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from attractor.metrics.auroc import auroc  # noqa: F401  (re-exported: one AUROC)


def answer_entropy(classes: Sequence[str | None]) -> float:
    """Shannon entropy (nats) of the empirical answer distribution (null is one class)."""
    counts = np.array(list(Counter(classes).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def top1_share(classes: Sequence[str | None]) -> float:
    """Share of samples in the most common class (null counts as a class)."""
    return Counter(classes).most_common(1)[0][1] / len(classes)


def vote_scores(classes: Sequence[str | None], weights: Sequence[float] | None = None
                ) -> dict[str, float]:
    """Total weight per voted class, in the order classes were first voted."""
    score: dict[str, float] = {}
    for i, c in enumerate(classes):
        w = 1.0 if weights is None else float(weights[i])
        if c is not None and math.isfinite(w) and w > 0:   # weight 0: the sample abstains
            score[c] = score.get(c, 0.0) + w
    return score


def majority_class(classes: Sequence[str | None], weights: Sequence[float] | None = None
                   ) -> str | None:
    """The vote's winner (module doc: ties go to the class voted first); None when no sample
    votes."""
    score = vote_scores(classes, weights)
    if not score:
        return None
    best = max(score.values())
    return next(c for c, s in score.items() if s == best)


def vote_correct(classes: Sequence[str | None], weights: Sequence[float] | None,
                 correct_of: dict[str, bool]) -> float:
    """Expected correctness of the vote: 1 or 0, or a tie's share of correct classes (module
    doc); 0 when no sample votes."""
    score = vote_scores(classes, weights)
    if not score:
        return 0.0
    best = max(score.values())
    tied = [c for c, s in score.items() if np.isclose(s, best)]
    return sum(bool(correct_of.get(c, False)) for c in tied) / len(tied)


def majority(classes: Sequence[str | None], correct_of: dict[str, bool]) -> tuple[str | None, bool]:
    """The unweighted winner (ties: the class voted first) and whether it is correct."""
    winner = majority_class(classes)
    return winner, bool(correct_of.get(winner, False)) if winner is not None else False


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def maj_at_k(classes: Sequence[str | None], correct_of: dict[str, bool], k: int,
             draws: int = 2000, seed: int = 0) -> float:
    """Expected majority-vote accuracy over random k-subsets of the samples (without
    replacement), ties split evenly among the tied classes; exact when all subsets are few,
    otherwise a seeded Monte Carlo estimate over ``draws`` subsets. Vectorised over subsets."""
    n = len(classes)
    if k >= n:
        subsets = np.arange(n)[None, :]
    elif math.comb(n, k) <= draws:
        from itertools import combinations

        subsets = np.array(list(combinations(range(n), k)))
    else:
        rng = np.random.default_rng(seed)
        subsets = rng.random((draws, n)).argsort(1)[:, :k]  # uniform k-subsets
    names = sorted({c for c in classes if c is not None})
    if not names:
        return 0.0
    code = {c: i for i, c in enumerate(names)}
    labels = np.array([code[c] if c is not None else -1 for c in classes])[subsets]
    counts = np.stack([(labels == i).sum(1) for i in range(len(names))], axis=1)  # (D, C)
    best = counts.max(1, keepdims=True)
    tied = (counts == best) & (best > 0)
    right = np.array([correct_of.get(c, False) for c in names], dtype=float)
    n_tied = tied.sum(1)
    share = np.where(n_tied > 0, (tied * right).sum(1) / np.maximum(n_tied, 1), 0.0)
    return float(share.mean())


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


def question_metrics(classes: Sequence[str | None], correct: Sequence[bool],
                     finish_reasons: Sequence[str], n_tokens: Sequence[int]) -> dict[str, Any]:
    """Every per-question metric of ``metrics/questions.parquet`` for one question."""
    n = len(classes)
    correct_of = {c: bool(ok) for c, ok in zip(classes, correct) if c is not None}
    n_correct = int(sum(bool(x) for x in correct))
    ent = answer_entropy(classes)
    maj, maj_ok = majority(classes, correct_of)
    row: dict[str, Any] = {
        "n_samples": n,
        "accuracy": n_correct / n,
        "answer_entropy_nats": ent,
        "answer_entropy_bits": ent / math.log(2),
        "top1_share": top1_share(classes),
        "n_unique_answers": len(set(classes)),
        "null_rate": sum(c is None for c in classes) / n,
        # a question whose samples all lack an answer has entropy 0 and top-1 share 1 (the null
        # class): filter on answered_share > 0 before reading those as "stable"
        "answered_share": sum(c is not None for c in classes) / n,
        "majority_answer": maj,
        "majority_correct": maj_ok,
        # imported rollouts may lack finish reasons or token counts: NaN, not a made-up 0
        "truncation_rate": (sum(f == "length" for f in finish_reasons) / n
                            if any(f is not None for f in finish_reasons) else float("nan")),
        "mean_tokens": (float(np.mean([t for t in n_tokens if t is not None and t == t]))
                        if any(t is not None and t == t for t in n_tokens) else float("nan")),
    }
    for k in k_values(n):
        row[f"pass@{k}"] = pass_at_k(n, n_correct, k)
    for k in k_values(n):
        row[f"maj@{k}"] = maj_at_k(classes, correct_of, k)
    return row


def bootstrap_ci(values: Sequence[float], reps: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval over questions (NaN interval for < 2 values)."""
    x = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(x.mean()), float(lo), float(hi)
