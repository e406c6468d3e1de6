"""Offline early-stopping rules replayed on stored traces.

Each rule decides, question by question, which traces to generate and how far, and which answer
to return; it is scored by the tokens it would have spent and the accuracy of its answer, against
full-budget majority voting over all samples. Traces are taken in sample-id order (the order an
engine would start them).

- ``deepconf``: DeepConf's online rule (:mod:`attractor.scaling.deepconf`). The first ``warmup``
  traces run in full; the threshold is the ``percentile``-th percentile of their lowest group
  confidences (window ``window``); every later trace stops at the first token whose
  sliding-window confidence falls below it and never votes. The answer is DeepConf's weighted
  vote: warm-up traces at or above the threshold and the later traces that ran to the end, each
  weighted by its lowest group confidence. A trace shorter than the window is judged on its
  single group.
- ``consensus``: traces one after another; stop once at least ``min_traces`` are done and the top
  answer holds ``share`` of them.
- ``probe``: a saved early-token probe (``--probe PATH``): a trace whose probe score at the
  probe's N tokens is below ``threshold`` is cut after N tokens and never votes; the others run
  in full and vote by majority. ``sample --early-stop probe:PATH,threshold=T`` spends exactly
  these tokens.
- ``latent``: as consensus, but stop once the mean pairwise cosine of the done traces' latents
  (one layer and position) reaches ``tightness``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from attractor.scaling import deepconf
from attractor.scaling.deepconf import first_below
from attractor.scaling.vote import vote_correct


@dataclass
class Trace:
    """One stored trace: answer class, tokens spent (as DeepConf counts them, the stop token
    included: :func:`attractor.engines.base.spent_tokens`), token confidences, and an optional
    latent."""

    answer: str | None
    n_tokens: int
    confidences: np.ndarray
    latent: np.ndarray | None = None
    probe: float | None = None   # probe score at its N tokens; None when not judged


@dataclass
class RuleOutcome:
    """What a rule spent on one question and whether its answer is right (ties split)."""

    tokens: float
    correct: float


def majority_outcome(traces: list[Trace], correct_of: dict[str, bool]) -> RuleOutcome:
    """Full-budget majority voting over all traces (the reference)."""
    return RuleOutcome(float(sum(t.n_tokens for t in traces)),
                   vote_correct([t.answer for t in traces], np.ones(len(traces)), correct_of))


def deepconf_rule(warmup: int, percentile: float, window: int) -> Callable:
    """DeepConf's online early stop and vote (see module doc)."""
    def run(traces: list[Trace], correct_of: dict[str, bool]) -> RuleOutcome:
        warm = traces[:warmup]
        thr = deepconf.threshold([t.confidences for t in warm], percentile, window)
        if thr is None:
            return majority_outcome(traces, correct_of)
        tokens = float(sum(t.n_tokens for t in warm))
        stopped = [False] * len(warm)
        for t in traces[warmup:]:
            stop = first_below(t.confidences, window, thr) if len(t.confidences) else None
            tokens += t.n_tokens if stop is None else stop
            stopped.append(stop is not None)
        w = deepconf.voting_weights([t.confidences for t in traces],
                                    [t.answer is not None for t in traces], stopped, warmup, thr,
                                    window)
        return RuleOutcome(tokens, vote_correct([t.answer for t in traces], w, correct_of))
    return run


def consensus_rule(min_traces: int, share: float) -> Callable:
    """Stop sampling once the leading answer holds ``share`` of at least ``min_traces``."""
    def run(traces: list[Trace], correct_of: dict[str, bool]) -> RuleOutcome:
        done: list[Trace] = []
        for t in traces:
            done.append(t)
            answers = [d.answer for d in done if d.answer is not None]
            if len(done) >= min_traces and answers:
                top = max(answers.count(a) for a in set(answers))
                if top / len(done) >= share:
                    break
        return RuleOutcome(float(sum(d.n_tokens for d in done)),
                       vote_correct([d.answer for d in done], np.ones(len(done)), correct_of))
    return run


def probe_rule(threshold: float, n_read: int) -> Callable:
    """Cut traces whose probe score is below ``threshold`` after ``n_read`` tokens."""
    def run(traces: list[Trace], correct_of: dict[str, bool]) -> RuleOutcome:
        cut = [t.probe is not None and t.probe < threshold for t in traces]
        tokens = sum(n_read if c else t.n_tokens for t, c in zip(traces, cut))
        answers = [None if c else t.answer for t, c in zip(traces, cut)]
        return RuleOutcome(float(tokens), vote_correct(answers, np.ones(len(traces)), correct_of))
    return run


def latent_rule(min_traces: int, tightness: float) -> Callable:
    """Stop once the done traces' latents are tight (mean pairwise cosine >= ``tightness``)."""
    def run(traces: list[Trace], correct_of: dict[str, bool]) -> RuleOutcome:
        if any(t.latent is None for t in traces):
            return RuleOutcome(float("nan"), float("nan"))
        done: list[Trace] = []
        for t in traces:
            done.append(t)
            if len(done) >= max(2, min_traces):
                x = np.stack([d.latent for d in done])
                xn = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
                s = len(done)
                if ((xn.sum(0) ** 2).sum() - s) / (s * (s - 1)) >= tightness:
                    break
        return RuleOutcome(float(sum(d.n_tokens for d in done)),
                       vote_correct([d.answer for d in done], np.ones(len(done)), correct_of))
    return run
