"""Rich progress bars and tables shared by the commands."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

console = Console(stderr=False)


class _NoBar:
    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar (a silent stand-in when ``enabled`` is False)."""
    if not enabled:
        yield _NoBar()
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        yield bar


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with string-formatted cells; a cell too wide for the terminal wraps onto the
    next line instead of being cut to an ellipsis (method names must stay readable)."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[fmt(x) for x in r])
    return t


def frame_table(title: str, df: Any, headers: list[str] | None = None) -> Table:
    """:func:`table` of a pandas DataFrame (its columns, or ``headers`` in their place)."""
    return table(title, headers or [str(c) for c in df.columns], df.values.tolist())


def fmt(x: Any) -> str:
    """Compact cell text: 3 decimals for floats, '-' for None."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)
