"""Latent shards: ``latents/part-*.safetensors`` (one float16 2-D tensor named ``latents``) and
``latents/index.parquet`` (question_id, sample_id, layer, position, occurrence, token_index,
shard, row)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute.is_in)
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from attractor.errors import UserError
from attractor.store.atomic import _UMASK, atomic_write_table

INDEX_SCHEMA = pa.schema([
    ("question_id", pa.string()), ("sample_id", pa.int32()), ("layer", pa.int16()),
    ("position", pa.string()), ("occurrence", pa.int32()), ("token_index", pa.int32()),
    ("shard", pa.string()), ("row", pa.int64()),
])


class HiddenStore:
    """Reads and appends latent shards of one run directory."""

    def __init__(self, run_path: Path) -> None:
        self.dir = Path(run_path) / "latents"
        self._index: pa.Table | None = None

    @property
    def index_path(self) -> Path:
        return self.dir / "index.parquet"

    def index(self) -> pa.Table:
        """The whole index (empty with the schema when nothing is captured); the latent files
        are checked against their record first (one line naming a damaged one)."""
        if self._index is None:
            self.check()
            self._index = (pq.read_table(self.index_path) if self.index_path.exists()
                           else INDEX_SCHEMA.empty_table())
        return self._index

    def damage(self, deep: bool = False) -> list:
        """Damaged latent files (shards and index): see :mod:`attractor.store.integrity`."""
        from attractor.store.integrity import LATENTS, damaged_shards

        found = damaged_shards(self.dir, deep=deep, pattern=LATENTS)
        if self.index_path.exists() and not any(d.path == self.index_path for d in found):
            from attractor.store.integrity import Damage, _opens

            why = _opens(self.index_path)
            if why:
                found.append(Damage(self.index_path, why))
        return found

    def check(self) -> None:
        """UserError naming the first damaged latent file and how to repair it."""
        found = self.damage()
        if found:
            run = self.dir.parent
            more = f" (and {len(found) - 1} more: attractor verify {run})" if len(found) > 1 \
                else ""
            raise UserError(f"{found[0].line()}{more}; repair it by running the run's own "
                            f"`attractor capture {run} ...` command again (it captures the "
                            "damaged shard's rollouts again)")

    def repair(self, log=print) -> int:
        """Set every damaged latent file aside (``latents/_damaged/``, kept) and drop its rows
        from the index, so that a capture resumes exactly those rollouts; a damaged index takes
        every shard with it. Returns the number of files set aside."""
        from attractor.store.integrity import forget_shard, set_aside

        found = self.damage(deep=True)
        if not found:
            return 0
        if any(d.path == self.index_path for d in found):
            from attractor.store.integrity import Damage

            found += [Damage(p, "listed by the damaged index") for p in
                      sorted(self.dir.glob("part-*.safetensors"))
                      if p not in {d.path for d in found}]
        for d in found:
            where = set_aside(d)
            log(f"repairing {d.line()}" + (f"; kept it as {where}" if where else ""))
        if self.index_path.exists():
            gone = {d.path.name for d in found}
            idx = pq.read_table(self.index_path)
            keep = pa.compute.invert(pa.compute.is_in(idx["shard"], pa.array(sorted(gone))))
            self._write_index(idx.filter(keep))
        else:
            forget_shard(self.dir, "index.parquet")
        self._index = None
        return len(found)

    def _write_index(self, table: pa.Table) -> None:
        """The index, atomically, recorded before it is renamed into place."""
        from attractor.store.integrity import LATENTS, record_shard

        atomic_write_table(self.index_path, table, before_publish=lambda tmp: record_shard(
            self.dir, "index.parquet", tmp, table.num_rows, pattern=LATENTS))
        self._index = table

    def next_shard_name(self) -> str:
        """A shard name not used by the index (an orphan from a killed run is overwritten)."""
        used = set(self.index().column("shard").to_pylist())
        k = 0
        while f"part-{k:05d}.safetensors" in used:
            k += 1
        return f"part-{k:05d}.safetensors"

    def append(self, vectors: torch.Tensor, rows: dict[str, list]) -> None:
        """Write one shard (float16) and then the index that lists it, both atomically."""
        from attractor.store.integrity import LATENTS, record_shard

        self.dir.mkdir(parents=True, exist_ok=True)
        name = self.next_shard_name()
        tmp = self.dir / f".{name}.tmp"
        save_file({"latents": vectors.to(torch.float16).contiguous()}, str(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # safetensors writes 0600; the run's other files are 0644
        n = vectors.shape[0]
        record_shard(self.dir, name, tmp, n, pattern=LATENTS)
        tmp.replace(self.dir / name)
        new = pa.table({**rows, "shard": [name] * n, "row": list(range(n))}, schema=INDEX_SCHEMA)
        self._write_index(pa.concat_tables([self.index(), new]))

    def memmap(self, shard: str) -> np.ndarray:
        """A read-only memory map of a shard's ``latents`` tensor: fancy indexing reads only the
        pages of the rows it touches, which keeps streaming analyses within bounded memory."""
        import json
        import struct

        path = self.dir / shard
        if not path.exists():
            raise UserError(f"{path}: listed in the latent index but missing")
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        meta = header["latents"]
        if meta["dtype"] != "F16":
            raise UserError(f"{path}: expected float16 latents, found {meta['dtype']}")
        start = 8 + n + meta["data_offsets"][0]
        return np.memmap(path, dtype=np.float16, mode="r", offset=start,
                         shape=tuple(meta["shape"]))

    def read_rows(self, shard: str, rows: np.ndarray) -> np.ndarray:
        """Rows of one shard as float32 (reads only the span between the first and last row)."""
        path = self.dir / shard
        if not path.exists():
            raise UserError(f"{path}: listed in the latent index but missing")
        lo, hi = int(rows.min()), int(rows.max()) + 1
        with safe_open(str(path), framework="numpy") as f:
            block = f.get_slice("latents")[lo:hi]
        return np.asarray(block, dtype=np.float32)[rows - lo]

    def latents(self, question_id: str, layer: int, position: str, occurrence: int = 0
                ) -> np.ndarray:
        """Vectors of one question at one layer and position, shape (samples, d), in sample_id
        order. ``occurrence`` picks the j-th vector of multi-vector positions (every:K,
        chunk:W, last:K)."""
        import pyarrow.compute as pc

        idx = self.index()
        mask = pc.and_(pc.and_(pc.equal(idx["question_id"], question_id),
                               pc.equal(idx["layer"], layer)),
                       pc.and_(pc.equal(idx["position"], position),
                               pc.equal(idx["occurrence"], occurrence)))
        sub = idx.filter(mask).sort_by("sample_id")
        if sub.num_rows == 0:
            raise UserError(f"no latents for question {question_id!r}, layer {layer}, position "
                            f"{position!r} (occurrence {occurrence}) in {self.dir}")
        shards = np.asarray(sub.column("shard").to_pylist())
        rows = np.asarray(sub.column("row").to_pylist())
        out = None
        for shard in dict.fromkeys(shards.tolist()):
            sel = np.flatnonzero(shards == shard)
            block = np.asarray(self.memmap(shard)[rows[sel]], dtype=np.float32)
            if out is None:
                out = np.empty((len(rows), block.shape[1]), dtype=np.float32)
            out[sel] = block
        return out

    def default_choice(self, layer: int | None = None, position: str | None = None
                       ) -> tuple[int | None, str | None]:
        """The (layer, position) a per-sample latent signal uses unless the user names them: the
        last captured layer, and the single-vector position covering the most rollouts
        (``answer`` misses answerless ones). (None, None) when nothing is captured."""
        idx = self.index().to_pandas()
        if idx.empty:
            if layer is not None or position is not None:
                raise UserError(f"{self.dir.parent}: no latents captured; run `attractor capture` "
                                "before naming --layer or --position")
            return None, None
        if layer is not None and layer not in set(idx["layer"]):
            raise UserError(f"--layer {layer}: not captured (captured layers: "
                            f"{', '.join(map(str, sorted(set(idx['layer']))))})")
        if position is not None and position not in set(idx["position"]):
            raise UserError(f"--position {position}: not captured (captured positions: "
                            f"{', '.join(sorted(set(idx['position'])))})")
        layer = int(idx["layer"].max()) if layer is None else layer
        single = idx[(idx["occurrence"] == 0) & (idx["layer"] == layer)]
        if position is None and not single.empty:
            position = str(single.groupby("position").size().sort_values(ascending=False).index[0])
        return layer, position

    def every_sample(self, question_id: str, layer: int | None, position: str | None,
                     n_samples: int) -> np.ndarray | None:
        """The question's vectors (samples, d) when every one of its ``n_samples`` has one,
        else None."""
        if layer is None or position is None:
            return None
        try:
            x = self.latents(question_id, layer, position)
        except UserError:
            return None
        return x if len(x) == n_samples else None
