"""What a run's stored files should be, and what is wrong with them.

Every rollout shard a run writes is recorded in ``rollouts/_shards.json`` (its size in bytes,
sha256 and row count) *before* it is renamed into place, so a shard that is later truncated,
overwritten, deleted or copied in from elsewhere differs from the record. Captured latents
(``latents/part-*.safetensors`` and ``latents/index.parquet``) are recorded the same way in
``latents/_shards.json``, and metric tables in ``metrics/_shards.json``. Reading commands check
sizes (a stat per file) and that each file opens; ``attractor verify`` also checks hashes.
Runs written before the records existed are checked only for files that do not open.

``attractor sample`` with the run's own command repairs a run: a damaged shard is moved to
``rollouts/_damaged/`` (kept, never deleted) and its questions are sampled again, which gives the
same rollouts because every rollout is a function of its seed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from attractor.store.atomic import atomic_write_json
from attractor.tasks.loaders import sha256_file   # the project's one file hash

RECORD = "_shards.json"   # "_": pyarrow and pandas skip it when they read the folder
DAMAGED = "_damaged"


@dataclass(frozen=True)
class Damage:
    """One damaged shard: its path and what is wrong with it."""

    path: Path
    reason: str

    def line(self) -> str:
        """One line naming the file and the damage."""
        return f"{self.path}: {self.reason}"


def read_record(shard_dir: Path) -> dict[str, dict] | None:
    """The shard record, or None for a run written before records existed (or one whose record
    was lost: then only unreadable shards are found)."""
    path = shard_dir / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


ROLLOUTS = "part-*.parquet"       # the shards of a folder: a file matching it that the record
LATENTS = "part-*.safetensors"    # does not name was copied in


def record_shard(shard_dir: Path, name: str, written: Path | str, rows: int | None,
                 pattern: str = ROLLOUTS) -> None:
    """Add ``name`` (its bytes are at ``written``, about to be renamed into place) to the
    record. A run without a record starts one only when it has no ``pattern`` files yet, so an
    older run's unrecorded files are not taken for foreign ones."""
    record = read_record(shard_dir)
    if record is None:
        if pattern and any(p.name != name for p in shard_dir.glob(pattern) if p.is_file()):
            return
        record = {}
    record[name] = {"bytes": Path(written).stat().st_size, "sha256": sha256_file(Path(written)),
                    "rows": rows}
    atomic_write_json(shard_dir / RECORD, record)


def forget_shard(shard_dir: Path, name: str) -> None:
    """Drop ``name`` from the record (a damaged shard moved aside before its repair)."""
    record = read_record(shard_dir)
    if record is not None and name in record:
        del record[name]
        atomic_write_json(shard_dir / RECORD, record)


def _opens(path: Path) -> str | None:
    """None when the file's own structure reads (a Parquet footer, a safetensors header whose
    offsets fit the file, JSON), else why not."""
    try:
        if path.suffix == ".parquet":
            pq.read_metadata(path)
        elif path.suffix == ".safetensors":
            _safetensors_fits(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except Exception as err:  # pyarrow, json and struct raise several types for damage
        kind = {".parquet": "Parquet", ".safetensors": "safetensors", ".json": "JSON"}
        return (f"not a readable {kind.get(path.suffix, '')} file "
                f"({(str(err).splitlines() or [type(err).__name__])[0][:80]})")
    return None


def _safetensors_fits(path: Path) -> None:
    """Raise unless the header parses and its last tensor ends where the file does."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size:
            raise ValueError(f"header length {n} exceeds the file")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end != size:
        raise ValueError(f"{size} bytes, the header says {8 + n + end}")


def file_damage(path: Path) -> Damage | None:
    """The damage of one recorded file (its size against the record, then whether it opens),
    None when it is whole: the check a reader makes of the one file it reads."""
    entry = (read_record(path.parent) or {}).get(path.name)
    if entry is not None and path.stat().st_size != entry.get("bytes"):
        return Damage(path, f"{path.stat().st_size} bytes, {entry.get('bytes')} when written "
                            "(truncated or overwritten)")
    why = _opens(path)
    return Damage(path, why) if why else None


def damaged_shards(shard_dir: Path, deep: bool = False, pattern: str | None = ROLLOUTS
                   ) -> list[Damage]:
    """Every damaged file of a folder: recorded but missing, another size, (``deep``) another
    sha256, unreadable, or matching ``pattern`` but not written by this run (None: metric
    folders, where other writers' files are not foreign)."""
    if not shard_dir.exists():
        return []
    record = read_record(shard_dir)
    present = {} if pattern is None else {
        p.name: p for p in sorted(shard_dir.glob(pattern)) if p.is_file()}
    out: list[Damage] = []
    for name, entry in (record or {}).items():
        path = shard_dir / name
        if not path.is_file():
            out.append(Damage(path, "missing (the run wrote it: it was deleted or moved)"))
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            out.append(Damage(path, f"{size} bytes, {entry.get('bytes')} when written "
                                    "(truncated or overwritten)"))
            continue
        if deep and sha256_file(path) != entry.get("sha256"):
            out.append(Damage(path, "sha256 differs from when it was written (corrupt)"))
            continue
        why = _opens(path)
        if why:
            out.append(Damage(path, why))
    for name, path in present.items():
        if record is not None and name not in record:
            out.append(Damage(path, "not written by this run (copied in from elsewhere?)"))
        elif record is None:
            why = _opens(path)
            if why:
                out.append(Damage(path, why))
    return out


def set_aside(damage: Damage) -> Path | None:
    """Move a damaged file to ``_damaged/NAME.TIMESTAMP`` in its folder (never deleted) and
    drop it from the record; returns where it went (None for a missing one)."""
    shard_dir = damage.path.parent
    forget_shard(shard_dir, damage.path.name)
    if not damage.path.exists():
        return None
    dest = shard_dir / DAMAGED / f"{damage.path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    dest.parent.mkdir(exist_ok=True)
    damage.path.replace(dest)
    return dest
