"""Grading rollouts: extract each answer, cluster equal answers, compare the classes with gold.

A rollout without an extractable answer has ``answer = None`` and ``answer_class = None``; it is
wrong for accuracy. A truncated rollout (``finish_reason == "length"``) gets an answer only if
its text already holds a complete answer marker (never a guess).
"""
from __future__ import annotations

from dataclasses import dataclass

from attractor.grading.extract import extract_answer, raw_answer
from attractor.grading.math_equiv import MathVerifier

GRADERS = ("auto", "math", "exact")


@dataclass
class Grade:
    """The grading columns of one rollout."""

    answer: str | None
    answer_class: str | None
    correct: bool
    extraction: str | None


def grader_for(kind: str, grader: str) -> str:
    """``math`` or ``exact`` for a task kind and a ``--grader`` choice."""
    if grader not in GRADERS:
        from attractor.errors import ConfigError

        raise ConfigError(f"--grader: expected one of {', '.join(GRADERS)}, got '{grader}'")
    if grader != "auto":
        return grader
    return "math" if kind == "math" else "exact"


def grade_question(texts: list[str], gold: str, kind: str, grader: str,
                   verifier: MathVerifier | None = None) -> list[Grade]:
    """Grade all samples of one question together, so that their answers share classes.

    Classes: answers equal after normalisation share a class; under the math grader, distinct
    answers that math-verify finds equal (either direction) join the first such class. The class
    label is the first-seen answer of the class.
    """
    mode = grader_for(kind, grader)
    answers, methods = [], []
    for t in texts:
        answers.append(extract_answer(t, kind))
        methods.append(raw_answer(t)[1] if answers[-1] is not None else None)
    gold_answer = extract_answer(gold, kind, gold=True)
    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    label: dict[str, str] = {}
    reps: list[str] = []
    if mode == "math" and distinct:
        verifier = verifier or MathVerifier(workers=0)
        for a in distinct:
            match = None
            if reps:
                eq = verifier.equal_many([(r, a) for r in reps] + [(a, r) for r in reps])
                hits = [r for r, x, y in zip(reps, eq[:len(reps)], eq[len(reps):]) if x or y]
                match = hits[0] if hits else None
            label[a] = match or a
            if match is None:
                reps.append(a)
        if gold_answer is None:
            correct_rep = set()
        else:
            eq = verifier.equal_many([(gold_answer, r) for r in reps])
            correct_rep = {r for r, ok in zip(reps, eq) if ok}
    else:
        label = {a: a for a in distinct}
        correct_rep = set()
        if gold_answer is not None:
            correct_rep = {a for a in distinct if a.lower() == gold_answer.lower()}
    out = []
    for a, m in zip(answers, methods):
        cls = label.get(a) if a is not None else None
        out.append(Grade(answer=a, answer_class=cls, correct=cls is not None and cls in correct_rep,
                         extraction=m))
    return out


def correct_answers(texts: list[str], problems) -> list[bool]:
    """Whether each generated text's extracted answer equals its problem's gold answer (exact
    match of the extracted answers: the latent tasks' graphs and proofs have one-word answers)."""
    got = [extract_answer(t, p.kind) for t, p in zip(texts, problems)]
    return [a is not None and a == extract_answer(p.gold, p.kind, gold=True)
            for a, p in zip(got, problems)]
