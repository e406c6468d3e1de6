"""The one record every task produces: a question, its gold answer and optional CoT steps."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The marker between a chain of thought and its answer in every synthetic task ("... ### Tom is a
# lempus."); the extractor reads the text after the last one.
ANSWER_MARK = "###"


@dataclass
class Problem:
    """One question of a task.

    Attributes:
        id: stable identifier, unique within the task (a string, also for integer ids).
        question: the question text, without any prompt template.
        gold: the gold answer as written in the source (e.g. ``"70"``, ``"Tom is a lempus."``).
        steps: chain-of-thought steps, one sentence each, when the source has them.
        kind: the task family that decides prompt format and grading:
            ``"math"``, ``"prosqa"``, ``"prontoqa"`` or ``"arith"``.
        meta: anything else of the source row (graph, hop count, subject, level, ...).
    """

    id: str
    question: str
    gold: str
    steps: list[str] = field(default_factory=list)
    kind: str = "math"
    meta: dict[str, Any] = field(default_factory=dict)
