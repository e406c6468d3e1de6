"""RunStore: one run directory -- manifest, rollout shards, metric tables -- with atomic writes.

Layout::

    RUN/manifest.json              reproducibility checklist and the status of each stage
    RUN/rollouts/part-00000.parquet  whole questions, every sample of each (a shard is whole or absent)
    RUN/metrics/*.parquet, *.json

Every write goes to a temporary file in the same directory and is renamed over the target, so a
kill at any moment leaves each file either old or new, never half written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute.sort_indices)
import pyarrow.parquet as pq

from attractor.errors import DataError, RunMismatchError, UserError
from attractor.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_table
from attractor.store.manifest import Manifest

__all__ = ["RunStore", "ROLLOUT_SCHEMA", "NOT_IDENTITY", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_table"]

ROLLOUT_SCHEMA = pa.schema([
    ("question_id", pa.string()),
    ("sample_id", pa.int32()),
    ("seed", pa.int64()),
    ("prompt_token_ids", pa.list_(pa.int32())),
    ("completion_token_ids", pa.list_(pa.int32())),
    ("text", pa.string()),
    ("n_tokens", pa.int32()),
    ("finish_reason", pa.string()),
    ("token_logprobs", pa.list_(pa.float32())),
    ("token_entropies", pa.list_(pa.float32())),
    ("token_confidences", pa.list_(pa.float32())),
    ("temperature", pa.float32()),
    ("top_p", pa.float32()),
    ("top_k", pa.int32()),
    ("max_new_tokens", pa.int32()),
    ("engine", pa.string()),
    ("answer", pa.string()),
    ("answer_class", pa.string()),
    ("correct", pa.bool_()),
    ("extraction", pa.string()),
    ("label_correct", pa.bool_()),
    ("answer_flexible", pa.string()),
    ("answer_class_flexible", pa.string()),
    ("correct_flexible", pa.bool_()),
])
# columns added after runs were first written: a shard without them reads them as nulls
LATER_COLUMNS = ("answer_flexible", "answer_class_flexible", "correct_flexible")


# fields that older runs stored as identity but that no longer decide what a run is
NOT_IDENTITY = {"questions_per_shard"}


def _read_shard(path: Path, columns: list[str]) -> pa.Table:
    """``columns`` of one rollout shard; the :data:`LATER_COLUMNS` an older shard lacks are
    nulls (so runs written before them still read, and mix with newer shards)."""
    have = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in have]
    if [c for c in missing if c not in LATER_COLUMNS]:
        pq.read_table(path, columns=columns)   # raises, naming the missing column
    table = pq.read_table(path, columns=[c for c in columns if c in have])
    for c in missing:
        table = table.append_column(ROLLOUT_SCHEMA.field(c),
                                    pa.nulls(table.num_rows, ROLLOUT_SCHEMA.field(c).type))
    return table.select(columns)


class RunStore:
    """A run directory. ``RunStore(path).rollouts()`` is a DataFrame of every rollout."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # -- paths -------------------------------------------------------------------------------
    def sub(self, *parts: str) -> Path:
        """A path inside the run directory; refuses names that would leave it."""
        target = self.path.joinpath(*parts).resolve()
        root = self.path.resolve()
        if target != root and root not in target.parents:
            raise UserError(f"{'/'.join(parts)}: path escapes the run directory {self.path}")
        return target

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def exists(self) -> bool:
        """True when the directory holds a manifest."""
        return self.manifest_path.exists()

    def check_writable(self, option: str = "--out") -> None:
        """UserError (before anything is loaded or written) when the run directory cannot be
        made or written (see :func:`attractor.checks.check_destination`)."""
        from attractor.checks import check_destination

        check_destination(self.path, option)
        metrics = self.path / "metrics"
        if metrics.is_dir():
            check_destination(metrics, option)

    # -- manifest ----------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest | None:
        """The run's :class:`~attractor.store.manifest.Manifest` (None when there is none)."""
        if not self.manifest_path.exists():
            return None
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{self.manifest_path}: not UTF-8 text (a damaged manifest)") \
                from None
        except json.JSONDecodeError as err:
            raise DataError(f"{self.manifest_path}:{err.lineno}: malformed manifest ({err.msg})") \
                from None
        return Manifest.from_dict(data, self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest atomically (the one place a manifest is written)."""
        atomic_write_json(self.manifest_path, manifest.to_dict())

    def update_stage(self, stage: str, **fields: Any) -> None:
        """Merge ``fields`` into the record of ``stage``."""
        m = self.manifest
        if m is None:
            raise UserError(f"{self.path}: not a run directory (no manifest.json)")
        m.stages.setdefault(stage, {}).update(fields)
        self.write_manifest(m)

    def check_compatible(self, identity: dict[str, Any]) -> None:
        """Raise :class:`RunMismatchError` naming the first field where an existing run's
        identity (task, model, sampling, ...) differs from ``identity``."""
        m = self.manifest
        if m is None:
            return
        old = {k: v for k, v in m.identity.items() if k not in NOT_IDENTITY}
        for key in sorted(set(old) | set(identity)):
            if old.get(key) != identity.get(key):
                flag = "--" + key.rsplit(".", 1)[-1].replace("_", "-")  # the user's option
                # an option at its default is absent from the identity (older runs resume)
                def shown(d: dict[str, Any]) -> str:
                    return f"{flag} {d[key]!r}" if key in d else f"{flag} at its default"
                raise RunMismatchError(
                    f"{self.path}: existing run was made with {shown(old)}, this command has "
                    f"{shown(identity)}; use another --out or the same options")

    # -- questions ---------------------------------------------------------------------------
    QUESTION_SCHEMA = pa.schema([("question_id", pa.string()), ("question", pa.string()),
                                 ("gold", pa.string()), ("kind", pa.string()),
                                 ("steps", pa.list_(pa.string())), ("meta_json", pa.string())])

    @property
    def questions_path(self) -> Path:
        return self.path / "questions.parquet"

    def write_questions(self, problems) -> None:
        """``questions.parquet``: id, question, gold, kind, steps and meta of every question, so
        a run directory is self-contained (grading needs no access to the task source)."""
        cols = {"question_id": [p.id for p in problems], "question": [p.question for p in problems],
                "gold": [p.gold for p in problems], "kind": [p.kind for p in problems],
                "steps": [list(p.steps) for p in problems],
                "meta_json": [json.dumps(p.meta, default=str) for p in problems]}
        atomic_write_table(self.questions_path, pa.table(cols, schema=self.QUESTION_SCHEMA))

    def questions(self):
        """The run's questions as :class:`~attractor.tasks.problem.Problem` objects, in order."""
        from attractor.tasks.problem import Problem

        if not self.questions_path.exists():
            raise UserError(f"{self.questions_path}: missing; the run directory is incomplete")
        rows = pq.read_table(self.questions_path).to_pylist()
        return [Problem(id=r["question_id"], question=r["question"], gold=r["gold"],
                        kind=r["kind"], steps=list(r["steps"] or []),
                        meta=json.loads(r["meta_json"] or "{}")) for r in rows]

    # -- rollouts ----------------------------------------------------------------------------
    @property
    def rollout_dir(self) -> Path:
        return self.path / "rollouts"

    def rollout_shards(self) -> list[Path]:
        """Complete rollout shards, in name order."""
        if not self.rollout_dir.exists():
            return []
        return sorted(p for p in self.rollout_dir.glob("part-*.parquet"))

    def shard_path(self, index: int) -> Path:
        """The path of rollout shard ``index``."""
        return self.rollout_dir / f"part-{index:05d}.parquet"

    def write_rollouts(self, path: Path, rows: list[dict[str, Any]]) -> None:
        """Write rows (dicts with ROLLOUT_SCHEMA's keys; missing ones null) as one shard."""
        cols = {f.name: [r.get(f.name) for r in rows] for f in ROLLOUT_SCHEMA}
        self.write_rollout_table(path, pa.table(cols, schema=ROLLOUT_SCHEMA))

    def write_rollout_table(self, path: Path, table: pa.Table) -> None:
        """Write (or rewrite: analyze grades imported rows) a rollout shard atomically,
        recording its size and sha256 before it is renamed into place."""
        from attractor.store.integrity import record_shard

        atomic_write_table(path, table, before_publish=lambda tmp:
                           record_shard(path.parent, path.name, tmp, table.num_rows))

    def check_shards(self) -> None:
        """UserError naming the first damaged rollout shard (size and footer checks: a stat
        and a footer read per shard) and how to repair it."""
        from attractor.store.integrity import damaged_shards

        damage = damaged_shards(self.rollout_dir)
        if damage:
            more = f" (and {len(damage) - 1} more: attractor verify {self.path})" \
                if len(damage) > 1 else ""
            raise UserError(f"{damage[0].line()}{more}; repair the run with its own `attractor "
                            "sample` command (it samples the damaged shards again from their "
                            "seeds)")

    def rollout_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """Every rollout as one Arrow table (ROLLOUT_SCHEMA when there are none)."""
        self.check_shards()
        shards = self.rollout_shards()
        cols = list(columns) if columns is not None else None
        if not shards:
            schema = ROLLOUT_SCHEMA if cols is None else pa.schema(
                [ROLLOUT_SCHEMA.field(c) for c in cols])
            return schema.empty_table()
        keys = [] if cols is None else [k for k in ("question_id", "sample_id") if k not in cols]
        want = [f.name for f in ROLLOUT_SCHEMA] if cols is None else cols + keys
        table = pa.concat_tables([_read_shard(s, want) for s in shards])
        return self._sorted(table).drop_columns(keys)

    def _sorted(self, table: pa.Table) -> pa.Table:
        """Rows in the run's question order (``questions.parquet``; ids it lacks after, by id),
        then by sample id: a budgeted run spreads one question over several shards."""
        order = {}
        if self.questions_path.exists():
            ids = pq.read_table(self.questions_path, columns=["question_id"]).column(0)
            order = {q: i for i, q in enumerate(ids.to_pylist())}
        qids = table.column("question_id").to_pylist()
        unknown = sorted({q for q in qids if q not in order})
        rank = {**order, **{q: len(order) + i for i, q in enumerate(unknown)}}
        keys = pa.table({"q": pa.array([rank[q] for q in qids], pa.int64()),
                         "s": table.column("sample_id")})
        idx = pa.compute.sort_indices(keys, sort_keys=[("q", "ascending"), ("s", "ascending")])
        return table.take(idx)

    def rollouts(self, columns: Iterable[str] | None = None):
        """Every rollout as a pandas DataFrame, in the run's question order, then by sample id
        (whatever shard each row is in)."""
        return self.rollout_table(columns).to_pandas()

    # -- latents -----------------------------------------------------------------------------
    @property
    def hidden_store(self):
        """The run's :class:`~attractor.store.hidden.HiddenStore` (imported here: it needs torch,
        which reading rollouts does not)."""
        from attractor.store.hidden import HiddenStore

        return HiddenStore(self.path)

    def latents(self, question_id: str, layer: int, position: str, occurrence: int = 0):
        """Captured vectors of one question, shape (samples, d), in sample_id order (see
        :meth:`attractor.store.hidden.HiddenStore.latents`)."""
        return self.hidden_store.latents(question_id, layer, position, occurrence)

    # -- metrics -----------------------------------------------------------------------------
    def write_metric_table(self, name: str, df) -> Path:
        """``metrics/{name}.parquet`` from a DataFrame, atomically, recorded (size, sha256)."""
        path = self.sub("metrics", f"{name}.parquet")
        table = pa.Table.from_pandas(df, preserve_index=False)
        atomic_write_table(path, table, before_publish=lambda tmp: _record_metric(
            path, tmp, table.num_rows))
        return path

    def write_metric_json(self, name: str, obj: Any) -> Path:
        """``metrics/{name}.json``, atomically, recorded (size, sha256)."""
        path = self.sub("metrics", f"{name}.json")
        data = (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()
        atomic_write_bytes(path, data, before_publish=lambda tmp: _record_metric(path, tmp, None))
        return path

    def check_metric(self, path: Path) -> None:
        """UserError when a metrics file differs from its record (truncated, overwritten) or
        does not open: one line naming it and how to rewrite it."""
        from attractor.store.integrity import file_damage

        damage = file_damage(path)
        if damage:
            raise UserError(f"{damage.line()}; rewrite it with `attractor analyze {self.path}`")

    def metric_json(self, name: str) -> Any:
        """``metrics/{name}.json``, checked (see :meth:`check_metric`)."""
        path = self.sub("metrics", f"{name}.json")
        if not path.exists():
            raise UserError(f"{path}: not found (run 'attractor analyze {self.path}' first)")
        self.check_metric(path)
        return json.loads(path.read_text(encoding="utf-8"))

    def source_fingerprint(self) -> dict[str, Any]:
        """What metrics are computed from: the sha256 of every rollout shard and of the latent
        index (which changes whenever latents are added)."""
        from attractor.tasks.loaders import sha256_file

        idx = self.path / "latents" / "index.parquet"
        return {"rollouts": {s.name: sha256_file(s) for s in self.rollout_shards()},
                "latents_index": sha256_file(idx) if idx.exists() else None}

    def check_metrics_fresh(self) -> None:
        """UserError unless ``metrics/`` was computed from the rollouts and latents the run holds
        now (a resumed sample, a new capture or a re-grade makes them stale)."""
        path = self.sub("metrics", "summary.json")
        if not path.exists():
            raise UserError(f"{self.path}: no metrics yet; run `attractor analyze {self.path}`")
        recorded = self.metric_json("summary").get("computed_from")
        if recorded != self.source_fingerprint():
            raise UserError(f"{self.path}: the metrics are stale (the rollouts or latents changed "
                            f"since they were computed); run `attractor analyze {self.path}` again")

    def metric_table(self, name: str):
        """A metrics table as a DataFrame."""
        path = self.sub("metrics", f"{name}.parquet")
        if not path.exists():
            raise UserError(f"{path}: not found (run 'attractor analyze {self.path}' first)")
        self.check_metric(path)
        return pq.read_table(path).to_pandas()


def _record_metric(path: Path, tmp: str, rows: int | None) -> None:
    from attractor.store.integrity import record_shard

    record_shard(path.parent, path.name, tmp, rows, pattern="")


def open_run(run: str | os.PathLike, *, partial: bool = False, writes: bool = True,
             graded: bool = False, check: bool = True) -> RunStore:
    """The one check of a run a command reads, before it loads a model or writes anything: a
    run directory (a manifest), with rollouts, intact shards, finished sampling (unless
    ``partial``), graded rollouts when ``graded``, and a writable directory when the command
    ``writes`` into it (``check=False``: only that it is a run). Every failure is one line
    naming the run and what to do."""
    store = RunStore(run)
    if not store.exists():
        raise UserError(f"{run}: not a run directory (no manifest.json)")
    if not check:   # verify: it lists the damage itself
        return store
    if not store.rollout_shards() and not (store.rollout_dir / "_shards.json").exists():
        raise UserError(f"{run}: the run has no rollouts yet")
    store.check_shards()
    m = store.manifest
    if not partial and "sample" in m.stages and not m.stage_done("sample"):
        have = len(set(store.rollouts(["question_id"])["question_id"]))
        raise UserError(f"{run}: sampling has not finished ({have} of {len(store.questions())} "
                        "questions have rollouts); resume it by running the same `attractor "
                        "sample` command again")
    if graded and store.rollouts(["correct"])["correct"].isna().any():
        raise UserError(f"{run}: ungraded rollouts; run `attractor analyze {run}` first")
    if writes:
        store.check_writable("run")
    return store
