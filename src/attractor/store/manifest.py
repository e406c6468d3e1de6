"""The run manifest (``RUN/manifest.json``) as one typed record: written by
:meth:`attractor.store.run_store.RunStore.write_manifest`, read by ``RunStore.manifest``.

Schema versions:

- 1: manifests written before the schema was versioned (no ``schema_version`` key). The same
  keys as version 2, so they load unchanged.
- 2: ``schema_version`` is stored, and ``engine`` (the engine's own record: name, version,
  device; for vLLM its log-probability mode).

Keys this version does not know are kept in ``extra`` and written back unchanged, so an older
attractor never drops what a newer one recorded.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attractor.errors import DataError

SCHEMA_VERSION = 2
ADDED_IN_2 = ("engine",)  # written only when known, so a version-1 manifest round-trips as it was
REQUIRED = ("attractor_version", "command", "created", "identity", "config", "task")


@dataclass
class Manifest:
    """What a run is and how it was made: the reproducibility checklist and the stages' status.

    ``identity`` holds the options a rerun into the same directory must share; ``config`` the
    full run config; ``model`` the weights' record (None for imported rollouts); ``stages`` one
    entry per command (``sample``, ``import``, ``capture``, ``analyze``) with its status."""

    attractor_version: str
    command: list[str]
    created: str
    identity: dict[str, Any]
    config: dict[str, Any]
    task: dict[str, Any]
    model: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    seeds: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    grading: dict[str, Any] | None = None
    logprobs: dict[str, Any] | None = None
    questions_per_shard: int | None = None
    hardware: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "manifest.json") -> Manifest:
        """The manifest of a parsed ``manifest.json`` (any schema version up to this one);
        DataError naming ``path`` and the key when it is not one."""
        if not isinstance(data, dict):
            raise DataError(f"{path}: a manifest is a JSON object, got {type(data).__name__}")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise DataError(f"{path}: not a run manifest (missing '{missing[0]}')")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise DataError(f"{path}: schema_version {version!r} is newer than this attractor "
                            f"reads ({SCHEMA_VERSION}); upgrade attractor")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["schema_version"] = version
        values["stages"] = dict(values.get("stages") or {})
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra"
               and not (f.name in ADDED_IN_2 and getattr(self, f.name) is None)}
        return {**out, **self.extra}

    def stage(self, name: str) -> dict[str, Any]:
        """The record of stage ``name`` ({} when it never ran)."""
        return self.stages.get(name) or {}

    def stage_done(self, name: str) -> bool:
        """True when stage ``name`` finished."""
        return self.stage(name).get("status") == "done"

    @property
    def model_spec(self) -> str | None:
        """The model spec the run sampled with (None for imported rollouts)."""
        return (self.model or {}).get("spec")

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights the run sampled with (None for imported rollouts)."""
        return (self.model or {}).get("weights_sha256")

    @property
    def sampling(self) -> dict[str, Any]:
        """The run's sampling config ({} for imported rollouts)."""
        return self.config.get("sampling") or {}

    # a read-only mapping view, for scripts written against the JSON file
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``manifest.json``'s value of ``key`` (``default`` when absent)."""
        return self.to_dict().get(key, default)
