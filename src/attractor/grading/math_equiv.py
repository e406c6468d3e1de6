"""Mathematical answer equivalence with math-verify, in a process pool with timeouts.

math-verify's own timeouts use ``signal.alarm``, which works only in a process's main thread;
pool workers run each check in their main thread, and a stuck worker is a lost future that the
pool is rebuilt after, so one pathological answer cannot hang a run.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from typing import Iterable


def _parse(expr: str):
    from math_verify import parse

    wrapped = expr if expr.strip().startswith("$") else f"${expr}$"
    parsed = parse(wrapped)
    return parsed if parsed else parse(expr)


def check_pair(gold: str, pred: str, timeout: int = 5) -> tuple[bool, str | None]:
    """``math_verify.verify(parse(gold), parse(pred))`` (gold first) and, when math-verify
    raised, the error as ``"Type: message"`` (the pair then counts as not equal)."""
    from math_verify import verify

    try:
        g, p = _parse(gold), _parse(pred)
        if not g or not p:
            return gold.strip() == pred.strip(), None
        return bool(verify(g, p, timeout_seconds=timeout)), None
    except Exception as e:  # noqa: BLE001 - any failure inside math-verify is counted, not raised
        return False, f"{type(e).__name__}: {str(e)[:120]}"


def verify_pair(gold: str, pred: str, timeout: int = 5) -> bool:
    """:func:`check_pair` without the error: False on any failure."""
    return check_pair(gold, pred, timeout)[0]


class MathVerifier:
    """A pool of worker processes answering ``equal(gold, pred)`` questions in batches.

    Use as a context manager; ``workers=0`` checks in this process (tests, tiny jobs).
    """

    def __init__(self, workers: int = 2, timeout: int = 5) -> None:
        self.workers = workers
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None
        self.timeouts = 0
        self.errors = 0                       # comparisons math-verify raised on
        self.first_error: str | None = None   # the first of them, "gold vs pred: Type: msg"

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Shut the worker processes down."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def equal_many(self, pairs: Iterable[tuple[str, str]]) -> list[bool]:
        """``verify_pair`` for every ``(gold, pred)``; a check past its timeout counts False
        (``timeouts``), one math-verify raised on counts False too (``errors``)."""
        pairs = list(pairs)
        if self.workers <= 0 or len(pairs) <= 2:
            return [self._count(g, p, check_pair(g, p, self.timeout)) for g, p in pairs]
        pool = self._get_pool()
        futures = [pool.submit(check_pair, g, p, self.timeout) for g, p in pairs]
        out: list[bool] = []
        broken = False
        for (g, p), fut in zip(pairs, futures):
            try:
                out.append(self._count(g, p, fut.result(timeout=self.timeout * 3 + 5)))
            except (cf.TimeoutError, cf.process.BrokenProcessPool):
                self.timeouts += 1
                broken = True
                out.append(False)
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def _count(self, gold: str, pred: str, result: tuple[bool, str | None]) -> bool:
        equal, error = result
        if error is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{gold!r} vs {pred!r}: {error}"
        return equal

    def failure_record(self, previous: dict | None = None) -> dict:
        """Counts to store in a stage record, added to ``previous`` (a resumed stage)."""
        previous = previous or {}
        return {"grading_errors": int(previous.get("grading_errors") or 0) + self.errors,
                "grading_timeouts": int(previous.get("grading_timeouts") or 0) + self.timeouts,
                "grading_first_error": previous.get("grading_first_error") or self.first_error}
