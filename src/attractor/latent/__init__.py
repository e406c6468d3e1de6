"""Latent reasoning: the continuous-thought loop (SLR), its stabilisers, training and evaluation.

``from attractor.latent import LatentLoop, LoopConfig, load_loop``. The names are resolved on
first use (PEP 562), so the light config modules of this package import without torch."""
from __future__ import annotations

from typing import Any

_EXPORTS = {"LatentLoop": "attractor.latent.slr.loop", "LoopConfig": "attractor.latent.slr.config",
            "load_loop": "attractor.latent.checkpoint", "preset": "attractor.latent.slr.config"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'attractor.latent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
