"""The one answer extractor of the project.

Order of precedence, for a completion:
1. the last ``\\boxed{...}`` (balanced braces);
2. the last ``#### n`` (GSM8K);
3. the text after the last ``###`` (Coconut's answer marker; ProsQA and ProntoQA sentences);
4. the last "The answer is ...".
Nothing else: a completion without any of these has no answer (``None``) -- in particular no
"last number in the text" fallback, which would give truncated rollouts a made-up answer. That
is the *strict* reading, the task's requested format. The *flexible* reading
(:func:`flexible_answer`) is lm-evaluation-harness's ``flexible-extract``: the last number in
the text, or the last option named; both are stored for every rollout, and a run's ``reading``
says which one its accuracy uses.

For ProsQA the answer is normalised to the sentence "{name} is a {concept}." and for ProntoQA
to "True"/"False"; ``gold=True`` reads a gold field, which may be the bare answer.
"""
from __future__ import annotations

import re

from attractor.tasks.problem import ANSWER_MARK

_BOXED = "\\boxed"
_GSM_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"[Tt]he (?:final )?answer is[:\s]*([^\n]+)")
_PROSQA_RE = re.compile(r"([A-Z][a-z]+) is an? ([a-z]+)")
_TF_RE = re.compile(r"\b(true|false)\b", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if absent
    or unclosed."""
    start = max(text.rfind(_BOXED + "{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def raw_answer(text: str) -> tuple[str | None, str | None]:
    """The answer span of a completion and the method that found it (``boxed``, ``gsm8k``,
    ``marker``, ``answer_is``), or ``(None, None)``."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    gsm = _GSM_RE.findall(text)
    if gsm:
        return gsm[-1].strip(), "gsm8k"
    if ANSWER_MARK in text:
        tail = text.rsplit(ANSWER_MARK, 1)[1].strip()
        if tail:
            return tail.split("\n")[0].strip(), "marker"
    said = _ANSWER_IS_RE.findall(text)
    if said:
        return said[-1].strip(), "answer_is"
    return None, None


THINK_END = "</think>"


def reasoning_end(text: str) -> tuple[int, str]:
    """Where a completion's reasoning ends (a character offset, exclusive) and why: just after
    ``</think>`` where the model writes one (``think``), else at the start of the answer marker
    that :func:`raw_answer` reads (``answer_marker``: ``\\boxed``, ``####``, ``###`` or "The
    answer is"), else the whole text (``completion``: no answer was given)."""
    if THINK_END in text:
        return text.index(THINK_END) + len(THINK_END), "think"
    _, method = raw_answer(text)
    starts = {"boxed": lambda: text.rfind("\\boxed"), "gsm8k": lambda: text.rfind("####"),
              "marker": lambda: text.rfind(ANSWER_MARK),
              "answer_is": lambda: list(_ANSWER_IS_RE.finditer(text))[-1].start()}
    if method in starts:
        return starts[method](), "answer_marker"
    return len(text), "completion"


def _strip_final_period(s: str) -> str:
    s = s.strip().rstrip(".").strip()
    return s


def normalise(answer: str, kind: str) -> str | None:
    """Canonical form of an answer span for ``kind`` (None if the span has no valid answer)."""
    if kind == "prosqa":
        m = _PROSQA_RE.search(answer)
        return f"{m.group(1)} is a {m.group(2)}." if m else None
    if kind == "prontoqa":
        m = _TF_RE.search(answer)
        return m.group(1).capitalize() if m else None
    if kind == "arith":
        s = _strip_final_period(answer).replace(",", "")
        return s if re.fullmatch(r"-?\d+", s) else None
    s = _strip_final_period(answer)
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s[1:-1].strip()
    return s or None


def extract_answer(text: str, kind: str, gold: bool = False) -> str | None:
    """The normalised answer of a completion (or of a gold field when ``gold=True``).

    A gold field may be the bare answer ("70", "Tom is a lempus.", "True") or a worked solution
    ending in ``#### n``; a completion must carry one of the markers listed in the module doc.
    """
    span, _ = raw_answer(text)
    if span is None and gold:
        span = text
    return normalise(span, kind) if span is not None else None


# lm-evaluation-harness, gsm8k ``flexible-extract``: this regex, group_select -1 (the last
# match), then exact_match's regexes_to_ignore (",", "\$", "(?s).*#### ", "\.$")
_FLEX_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_FLEX_IGNORE = (re.compile(r","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
# "Is Tom a lempus or scrompus?" (the ProsQA file and generator) or "... or a scrompus?"
_PROSQA_QUESTION = re.compile(r"Is (\S+) an? (\w+) or (?:an? )?(\w+)\?")


def question_options(question: str | None, kind: str) -> tuple[str, list[str]] | None:
    """A ProsQA question's person and its two options ("Is Tom a wumpus or a rorpus?")."""
    if kind != "prosqa" or not question:
        return None
    found = list(_PROSQA_QUESTION.finditer(question))
    if not found:
        return None
    m = found[-1]
    return m.group(1), [m.group(2), m.group(3)]


def flexible_span(text: str, kind: str, question: str | None = None) -> str | None:
    """The flexible reading's raw span: ProntoQA, the last True/False named; ProsQA, the last of
    the question's two options named (without the question: the last "X is a Y" sentence);
    otherwise the last number (lm-evaluation-harness's flexible-extract), None when there is
    none."""
    if kind == "prontoqa":
        found = _TF_RE.findall(text)
        return found[-1] if found else None
    if kind == "prosqa":
        opts = question_options(question, kind)
        if opts is None:
            found = _PROSQA_RE.findall(text)
            return f"{found[-1][0]} is a {found[-1][1]}." if found else None
        name, options = opts
        hits = [(m.start(), o) for o in options
                for m in re.finditer(rf"\b{re.escape(o)}\b", text)]
        return f"{name} is a {max(hits)[1]}." if hits else None
    found = _FLEX_NUMBER.findall(text)
    if not found:
        return None
    span = next(g for g in found[-1] if g).strip()
    for rx in _FLEX_IGNORE:
        span = rx.sub("", span)
    return span or None


def flexible_answer(text: str, kind: str, question: str | None = None) -> str | None:
    """The normalised flexible reading of a completion (see :func:`flexible_span`)."""
    span = flexible_span(text, kind, question)
    return normalise(span, kind) if span is not None else None
