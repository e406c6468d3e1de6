"""Atomic writes: every file goes to a temporary file in the same directory, is flushed, and is
renamed over the target, so a kill at any moment leaves it either old or new, never half
written. Published files get the permissions the umask gives (mkstemp makes 0600 files)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

_UMASK = os.umask(0)
os.umask(_UMASK)


def _publish(tmp: str, path: Path) -> None:
    """Give a finished temporary file normal permissions and rename it over ``path``."""
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600 files
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes,
                       before_publish: Callable[[str], None] | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (``before_publish(tmp)``
    runs on the finished temporary file first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_publish is not None:
            before_publish(tmp)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
                       .encode())


def atomic_write_table(path: Path, table: pa.Table,
                       before_publish: Callable[[str], None] | None = None) -> None:
    """A Parquet file, atomically (``before_publish(tmp)`` runs on the finished temporary
    file before it is renamed into place: a shard's record is written there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:   # on disk before the rename publishes it
            os.fsync(f.fileno())
        if before_publish is not None:
            before_publish(tmp)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_in(tmp: Path, path: Path) -> None:
    """Replace the directory ``path`` by the finished directory ``tmp`` (a checkpoint): the old
    one is renamed to ``NAME.old`` first and removed last, so a kill leaves either the old or
    the new checkpoint (:func:`settled` takes a ``NAME.old`` back after a kill between the two
    renames)."""
    import shutil

    for f in tmp.iterdir():   # on disk before the renames publish them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    old = path.with_name(path.name + ".old")
    settled(path)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def settled(path: Path) -> Path:
    """``path`` after a kill between :func:`swap_in`'s renames is undone (``NAME.old`` back in
    place when ``path`` is missing); returns ``path``."""
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():
        old.rename(path)
    return path
