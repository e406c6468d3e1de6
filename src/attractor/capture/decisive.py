"""The decisive token of an answer: the first token where a right and a wrong answer differ.

Internal consistency (Xie et al. 2024) reads the logit lens at the position that *predicts* the
answer label. In attractor's answer formats that label is not the first token of the answer span:

- ProsQA, "### Tom is a lempus.": " Tom is a" is shared by both options; the decisive token is
  the option's concept (" lempus");
- ProntoQA, "### True": the decisive token is True / False;
- math, arith and GSM8K: the first token of the answer (the ``\\boxed{}`` content or the number
  after ``####``), the same token the ``answer`` position predicts.

The ``decisive`` capture position is the token just *before* the decisive token (its hidden state
predicts the decisive token). :func:`answer_candidates` gives the labels the lens is restricted
to where the task has a fixed label set (ProsQA's two options, ProntoQA's True/False).
"""
from __future__ import annotations

import re

from attractor.grading.extract import (_PROSQA_RE, _TF_RE, flexible_span, question_options,
                                       raw_answer)
from attractor.tasks.problem import Problem
from attractor.tasks.prosqa import QUESTION_RE

LABEL_TASKS = ("prosqa", "prontoqa")


def flexible_decisive_char(text: str, kind: str, question: str | None = None) -> int | None:
    """The decisive character of the flexible reading: where the last option named (ProsQA,
    with its question), the last True/False or the last number starts."""
    if kind == "prosqa":
        opts = question_options(question, kind)
        if opts is None:
            found = list(_PROSQA_RE.finditer(text))
            return found[-1].start(2) if found else None
        hits = [m.start() for o in opts[1] for m in re.finditer(rf"\b{re.escape(o)}\b", text)]
        return max(hits) if hits else None
    span = flexible_span(text, kind, question)
    if span is None:
        return None
    start = text.rfind(span)
    return start if start >= 0 else None


def decisive_char(text: str, kind: str, reading: str = "strict",
                  question: str | None = None) -> int | None:
    """Character offset in ``text`` where the decisive token's word starts (None when the text
    has no answer of ``kind`` in ``reading``; ``question`` names ProsQA's options for the
    flexible reading)."""
    if reading == "flexible":
        return flexible_decisive_char(text, kind, question)
    span, _ = raw_answer(text)
    if span is None:
        return None
    start = text.rfind(span)
    if start < 0:
        return None
    if kind == "prosqa":
        m = _PROSQA_RE.search(span)
        return start + m.start(2) if m else None
    if kind == "prontoqa":
        m = _TF_RE.search(span)
        return start + m.start(1) if m else None
    return start


def token_holding(tokenizer, completion_ids: list[int], char: int) -> int:
    """Index of the completion token whose decoded text reaches past character ``char`` (the
    token that holds it), by binary search over decoded prefixes."""
    lo, hi = 0, len(completion_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(completion_ids[:mid + 1], skip_special_tokens=True)) > char:
            hi = mid
        else:
            lo = mid + 1
    return lo


def decisive_token_index(tokenizer, completion_ids: list[int], text: str,
                         kind: str, reading: str = "strict",
                         question: str | None = None) -> int | None:
    """Completion index of the token just before the decisive token (None without an answer,
    or when the decisive token opens the completion), in the run's answer ``reading``."""
    char = decisive_char(text, kind, reading, question)
    if char is None or char <= 0:
        return None
    t = token_holding(tokenizer, completion_ids, char)
    return t - 1 if 1 <= t < len(completion_ids) else None


def answer_candidates(problem: Problem) -> list[str] | None:
    """The label words of a fixed-label task, in a fixed order (the lens's candidate index):
    ProsQA's two options as the question names them, ProntoQA's True and False; None for tasks
    with open answers (math, arith)."""
    if problem.kind == "prosqa":
        m = QUESTION_RE.search(problem.question.strip())
        return [m.group(2), m.group(3)] if m else None
    if problem.kind == "prontoqa":
        return ["True", "False"]
    return None


def candidate_token_ids(tokenizer, words: list[str]) -> list[int] | None:
    """The first token of each candidate word as it follows a space in an answer sentence; None
    when two candidates share that token (the lens could not tell them apart)."""
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    return ids if len(set(ids)) == len(ids) else None
