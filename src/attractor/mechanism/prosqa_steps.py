"""The key tokens of a ProsQA rollout: the prompt's sentences as token spans, and each step of
the written backward proof with its gold sentence.

A step writes concept c_{k+1} after c_k (see :mod:`attractor.tasks.prosqa_proof`); its query is
the token just before c_{k+1} (the position that predicts it) and its gold sentences are those
whose object is the current concept c_k (the sentences a look-up must find; a concept with two
parents has two). Steps whose pair c_{k+1} -> c_k is not stated in the question (a wrong step)
are left out: they are not *correct steps*.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from attractor.capture.decisive import token_holding
from attractor.tasks.problem import ANSWER_MARK

SENTENCE_RE = re.compile(r"(?:Every )?(\S+) is an? (\S+?)\.")


@dataclass
class Step:
    """One proof step: its query token (index in prompt + completion) and the indices of its
    gold sentences among the prompt's sentences."""

    query: int
    gold: tuple[int, ...]


def sentence_spans(tokenizer, prompt_ids: list[int]) -> tuple[list[tuple[int, int]],
                                                              list[tuple[str, str]]]:
    """Token spans [a, b) of the prompt's "X is a Y." sentences and their (subject, object)."""
    text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    spans, pairs = [], []
    for m in SENTENCE_RE.finditer(text):
        a = token_holding(tokenizer, prompt_ids, m.start())
        b = token_holding(tokenizer, prompt_ids, m.end() - 1) + 1
        spans.append((a, min(b, len(prompt_ids))))
        pairs.append((m.group(1), m.group(2)))
    return spans, pairs


def proof_steps(tokenizer, prompt_len: int, completion_ids: list[int], text: str,
                pairs: list[tuple[str, str]]) -> list[Step]:
    """The correct steps of a rollout's written proof (text before the answer mark)."""
    head = text.split(ANSWER_MARK)[0]
    stated = set(pairs)
    by_object: dict[str, list[int]] = {}
    for i, (_, o) in enumerate(pairs):
        by_object.setdefault(o, []).append(i)
    steps: list[Step] = []
    prev: str | None = None
    for m in re.finditer(r"\S+", head):
        word = m.group(0)
        if word == ".":
            prev = None
            continue
        if prev is not None and (word, prev) in stated:
            t = token_holding(tokenizer, completion_ids, m.start())
            if 0 <= t < len(completion_ids):
                steps.append(Step(prompt_len + t - 1, tuple(by_object[prev])))
        prev = word
    return steps
