"""Models: ``load(spec)`` for ``tiny``, a local directory or a hub id."""
from attractor.models.load import load

__all__ = ["load"]
