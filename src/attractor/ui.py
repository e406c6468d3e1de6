"""Rich progress bars and tables shared by the commands."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
from rich.console import Console
from rich.markup import escape
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
    cells = [[escape(fmt(x)) for x in r] for r in rows]  # "[chunk:4]" is text, not markup
    for i, c in enumerate(columns):
        if i == 0:  # names (methods, signals) are never broken mid-word
            width = max([len(c)] + [len(r[0]) for r in cells]) if cells else len(c)
            t.add_column(c, no_wrap=True, min_width=min(width, 48))
        else:
            t.add_column(c, overflow="fold")
    for r in cells:
        t.add_row(*r)
    return t


def frame_table(title: str, df: Any, headers: list[str] | None = None) -> Table:
    """:func:`table` of a pandas DataFrame (its columns, or ``headers`` in their place)."""
    # row by row keeps each column's own type (an integer column stays integers)
    return table(title, headers or [str(c) for c in df.columns],
                 [list(r) for r in df.itertuples(index=False)])


def fmt(x: Any) -> str:
    """Compact cell text: 3 decimals for floats, '-' for None."""
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        text = f"{x:.3f}"
        return "0.000" if text == "-0.000" else text
    return str(x)
