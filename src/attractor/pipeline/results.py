"""What the token-space commands return to Python callers: small frozen records, one per command,
with the same fields on every exit (a finished run answers ``status="complete"`` and zeros)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SampleResult:
    """``run_sample``: ``status`` is ``done`` (this call sampled) or ``complete`` (the run was
    already finished: nothing to do)."""

    status: str
    questions: int
    new_rollouts: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class CaptureResult:
    """``run_capture``: rollouts captured by this call, vectors written, and the layers and
    positions captured."""

    rollouts: int
    vectors: int
    layers: list[int] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LabelCheck:
    """Grading against the file's own correctness labels: how many were labelled, how many
    disagree, and the first few ``question/sample`` that do."""

    labelled: int
    disagree: int
    first: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    """``run_import``: ``status`` ``done`` or ``complete`` (already imported), the counts, the
    task kind that decides grading (and whether it was detected), and the label check."""

    status: str
    questions: int
    rollouts: int
    kind: str | None = None
    kind_detected: bool = False
    label_check: LabelCheck | None = None
