"""The run directory."""
from attractor.store.run_store import RunStore

__all__ = ["RunStore"]
