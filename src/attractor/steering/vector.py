"""A steering vector on disk: one direction per decoder block, as safetensors with its
provenance (kind, run, model and weights hash, layers, position, questions used) as JSON
metadata. Row ``i`` is injected after block ``i``'s MLP; an all-zero row is not injected."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attractor.errors import UserError


@dataclass
class SteeringVector:
    """Directions ``(n_layers, hidden_size)`` and their provenance."""

    directions: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    def save(self, path: str | Path) -> None:
        """Write atomically as safetensors (never pickle)."""
        import torch
        from safetensors.torch import save

        from attractor.store.atomic import atomic_write_bytes

        t = torch.from_numpy(np.ascontiguousarray(self.directions, dtype=np.float32))
        atomic_write_bytes(Path(path), save({"directions": t}, metadata={
            k: json.dumps(v) for k, v in self.meta.items()}))

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        """Read a vector file; a one-line :class:`UserError` when it is not one."""
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise UserError(f"--steer {path}: no such file")
        try:
            with safe_open(str(p), framework="numpy") as f:
                keys = list(f.keys())
                d = f.get_tensor("directions") if "directions" in keys else None
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        except Exception as err:
            raise UserError(f"--steer {path}: not a steering vector "
                            f"({str(err).splitlines()[0]})") from None
        if d is None or d.ndim != 2:
            raise UserError(f"--steer {path}: not a steering vector (no 2-D 'directions' tensor)")
        return cls(np.asarray(d, np.float32), meta)

    def check_model(self, model, path: str | Path, weights_sha256: str | None = None) -> None:
        """Refuse a vector whose layer count or hidden size differs from ``model``'s, or (with
        ``weights_sha256``) one built on other weights of the same shape."""
        cfg = model.config
        layers, hidden = int(cfg.num_hidden_layers), int(cfg.hidden_size)
        if (self.n_layers, self.hidden_size) != (layers, hidden):
            raise UserError(f"--steer {path}: the vector has {self.n_layers} layers x "
                            f"{self.hidden_size} dims, the model {layers} layers x {hidden} "
                            f"dims (built for {self.meta.get('model')})")
        mine = self.meta.get("weights_sha256")
        if weights_sha256 and mine and mine != weights_sha256:
            raise UserError(f"--steer {path}: built on {self.meta.get('model')} (weights "
                            f"{mine[:12]}...), not on this model (weights "
                            f"{weights_sha256[:12]}...); build one on this model")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (a run's identity holds its vector's hash, not its path)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
