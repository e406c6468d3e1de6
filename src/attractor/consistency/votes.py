"""Votes among one question's samples, without its gold answer: the answer classes, TTRL's
majority reward and ScPO's preference pair.

A sample without an extractable answer abstains: it has no class, never wins a vote and
earns no TTRL reward (as :mod:`attractor.metrics.answers` treats it).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from attractor.metrics.answers import majority_class
from attractor.grading.grade import grade_question


def answer_classes(texts: list[str], kind: str, grader: str = "auto", reading: str = "strict",
                   question: str | None = None) -> list[str | None]:
    """Each text's answer class (equal answers share one; math answers by math-verify), or
    None where no answer can be extracted, in the ``reading`` given (strict: the task's
    format; flexible: the last number or option named, which needs ``question`` for ProsQA's
    options). No gold answer is read."""
    grades = grade_question(texts, "", kind, grader, question=question,
                            flexible=reading == "flexible")
    return [g.answer_class_flexible if reading == "flexible" else g.answer_class
            for g in grades]


def majority_rewards(classes: list[str | None]) -> list[float]:
    """TTRL's reward: 1.0 for a sample whose class is the group's majority class, else 0.0."""
    top = majority_class(classes)
    return [float(top is not None and c == top) for c in classes]


@dataclass
class Pair:
    """ScPO's pair for one question: sample indices, their vote counts and the weight."""

    chosen: int
    rejected: int
    chosen_votes: int
    rejected_votes: int
    weight: float


def preference_pair(classes: list[str | None], threshold: float) -> Pair | None:
    """The first sample of the most-voted class against the first of the least-voted class
    (ties: first seen), weighted by the vote margin (V+ - V-) / k; None when fewer than two
    classes were answered, the two most-voted classes tie (whatever the least-voted one
    holds), or the most-voted class holds under
    ``threshold`` of the k votes."""
    k = len(classes)
    votes = Counter(c for c in classes if c is not None)
    if len(votes) < 2:
        return None
    top = majority_class(classes)
    low = min(votes.values())
    bottom = next(c for c in classes if c is not None and votes[c] == low and c != top)
    runner_up = sorted(votes.values(), reverse=True)[1]
    if votes[top] < threshold * k or votes[top] == runner_up:
        return None  # below ScPO's filter, or the top classes tie: no preference
    return Pair(chosen=classes.index(top), rejected=classes.index(bottom),
                chosen_votes=votes[top], rejected_votes=votes[bottom],
                weight=(votes[top] - votes[bottom]) / k)
