"""Grading rollouts: extract each answer, cluster equal answers, compare the classes with gold.

A rollout without an extractable answer has ``answer = None`` and ``answer_class = None``; it is
wrong for accuracy. A truncated rollout (``finish_reason == "length"``) gets an answer only if
its text already holds a complete answer marker (never a guess).
"""
from __future__ import annotations

from dataclasses import dataclass

from attractor.grading.extract import extract_answer, flexible_answer, raw_answer
from attractor.grading.math_equiv import MathVerifier

GRADERS = ("auto", "math", "exact")


@dataclass
class Grade:
    """The grading columns of one rollout: the strict reading (``answer``, ``answer_class``,
    ``correct``, ``extraction``) and the flexible one (``*_flexible``)."""

    answer: str | None
    answer_class: str | None
    correct: bool
    extraction: str | None
    answer_flexible: str | None = None
    answer_class_flexible: str | None = None
    correct_flexible: bool = False


READINGS = ("strict", "flexible")


def check_reading(reading: str) -> str:
    """``strict`` (the task's requested answer format) or ``flexible`` (lm-evaluation-harness's
    flexible-extract: the last number, or the last option named)."""
    if reading not in READINGS:
        from attractor.errors import ConfigError

        raise ConfigError(f"--reading: expected one of {', '.join(READINGS)}, got '{reading}'")
    return reading


def check_grader(grader: str) -> str:
    """The one check of ``--grader`` (auto, math or exact)."""
    if grader not in GRADERS:
        from attractor.errors import ConfigError

        raise ConfigError(f"--grader: expected one of {', '.join(GRADERS)}, got '{grader}'")
    return grader


def grader_for(kind: str, grader: str) -> str:
    """``math`` or ``exact`` for a task kind and a ``--grader`` choice."""
    check_grader(grader)
    if grader != "auto":
        return grader
    return "math" if kind == "math" else "exact"


def _classes(answers: list[str | None], gold_answer: str | None, mode: str,
             verifier: MathVerifier | None) -> tuple[list[str | None], list[bool]]:
    """Each answer's class and correctness: equal answers share a class; under the math grader
    distinct answers that math-verify finds equal (either direction) join the first such class,
    labelled by its first-seen answer."""
    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    label: dict[str, str] = {}
    correct_rep: set[str] = set()
    if mode == "math" and distinct:
        verifier = verifier or MathVerifier(workers=0)
        reps: list[str] = []
        for a in distinct:
            match = None
            if reps:
                eq = verifier.equal_many([(r, a) for r in reps] + [(a, r) for r in reps])
                hits = [r for r, x, y in zip(reps, eq[:len(reps)], eq[len(reps):]) if x or y]
                match = hits[0] if hits else None
            label[a] = match or a
            if match is None:
                reps.append(a)
        if gold_answer is not None:
            eq = verifier.equal_many([(gold_answer, r) for r in reps])
            correct_rep = {r for r, ok in zip(reps, eq) if ok}
    else:
        label = {a: a for a in distinct}
        if gold_answer is not None:
            correct_rep = {a for a in distinct if a.lower() == gold_answer.lower()}
    classes = [label.get(a) if a is not None else None for a in answers]
    return classes, [c is not None and c in correct_rep for c in classes]


def grade_question(texts: list[str], gold: str, kind: str, grader: str,
                   verifier: MathVerifier | None = None, question: str | None = None,
                   flexible: bool = True) -> list[Grade]:
    """Grade all samples of one question together, so that their answers share classes, in
    both readings (``question``: lets the flexible reading name ProsQA's options;
    ``flexible=False`` skips that reading, whose fields stay empty)."""
    mode = grader_for(kind, grader)
    answers = [extract_answer(t, kind) for t in texts]
    methods = [raw_answer(t)[1] if a is not None else None for t, a in zip(texts, answers)]
    flex = [flexible_answer(t, kind, question) if flexible else None for t in texts]
    gold_answer = extract_answer(gold, kind, gold=True)
    classes, correct = _classes(answers, gold_answer, mode, verifier)
    f_classes, f_correct = _classes(flex, gold_answer, mode, verifier)
    return [Grade(answer=a, answer_class=c, correct=ok, extraction=m, answer_flexible=fa,
                  answer_class_flexible=fc, correct_flexible=fok)
            for a, c, ok, m, fa, fc, fok in zip(answers, classes, correct, methods, flex,
                                                f_classes, f_correct)]


def correct_answers(texts: list[str], problems) -> list[bool]:
    """Whether each generated text's extracted answer equals its problem's gold answer (exact
    match of the extracted answers: the latent tasks' graphs and proofs have one-word answers)."""
    got = [extract_answer(t, p.kind) for t, p in zip(texts, problems)]
    return [a is not None and a == extract_answer(p.gold, p.kind, gold=True)
            for a, p in zip(got, problems)]
