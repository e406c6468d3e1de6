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

from attractor.grading.extract import _PROSQA_RE, _TF_RE, raw_answer
from attractor.tasks.problem import Problem
from attractor.tasks.prosqa import QUESTION_RE

LABEL_TASKS = ("prosqa", "prontoqa")


def decisive_char(text: str, kind: str) -> int | None:
    """Character offset in ``text`` where the decisive token's word starts (None when the text
    has no answer of ``kind``)."""
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
                         kind: str) -> int | None:
    """Completion index of the token just before the decisive token (None without an answer,
    or when the decisive token opens the completion)."""
    char = decisive_char(text, kind)
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
