"""Resumable metric tables: ``metrics/NAME.parts/part-*.parquet``, each holding whole questions,
merged into ``metrics/NAME.parquet`` when a command finishes.

A killed command leaves complete parts (each written atomically); the next call reads which
questions they hold and computes only the rest, so a resumed table equals an uninterrupted one.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attractor.store.atomic import atomic_write_table


class PartTable:
    """The parts of one metric table of a run."""

    def __init__(self, metrics_dir: Path, name: str) -> None:
        self.name = name
        self.dir = Path(metrics_dir) / f"{name}.parts"
        self.final = Path(metrics_dir) / f"{name}.parquet"

    def open(self) -> None:
        """Start or resume: a table merged by an earlier call becomes the first part, so new
        questions (a resumed sample) are added to it rather than computed anew."""
        if self.final.exists() and not self.parts():
            atomic_write_table(self.dir / "part-00000.parquet", pq.read_table(self.final))

    def parts(self) -> list[Path]:
        """The finished parts, in write order."""
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.exists() else []

    def done_questions(self) -> set[str]:
        """Question ids held by a finished part."""
        done: set[str] = set()
        for p in self.parts():
            done.update(pq.read_table(p, columns=["question_id"]).column(0).to_pylist())
        return done

    def append(self, df: pd.DataFrame) -> None:
        """Write ``df`` (whole questions) as the next part."""
        if df.empty:
            return
        k = len(self.parts())
        atomic_write_table(self.dir / f"part-{k:05d}.parquet",
                           pa.Table.from_pandas(df, preserve_index=False))

    def merge(self, order: list[str] | None = None) -> pd.DataFrame:
        """Concatenate the parts into ``NAME.parquet`` (rows in the questions' ``order`` when
        given) and remove the parts; returns the table."""
        frames = [pq.read_table(p).to_pandas() for p in self.parts()]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if order is not None and not df.empty:
            rank = {q: i for i, q in enumerate(order)}
            df = df.iloc[df["question_id"].map(rank).fillna(len(rank)).argsort(kind="stable")]
            df = df.reset_index(drop=True)
        atomic_write_table(self.final, pa.Table.from_pandas(df, preserve_index=False))
        shutil.rmtree(self.dir, ignore_errors=True)
        return df

    def reset(self) -> None:
        """Drop parts and the merged table (a command run anew with other settings)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.final.unlink(missing_ok=True)
