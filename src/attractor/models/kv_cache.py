"""The KV cache in and out of a transformers forward, under either name transformers 5 uses.

transformers 5.24 renamed the forward argument and output field ``past_key_values`` to
``cache`` (the old name warns and goes away in 5.40); earlier 5 releases know only the old
name. The project supports ``transformers>=5.0,<6``, so the name is looked up, not assumed.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.lru_cache(maxsize=64)
def _cache_name(forward_owner: type) -> str:
    params = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(module: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for ``module``'s forward, with the name it accepts."""
    return {_cache_name(type(module)): cache}


def output_cache(out: Any) -> Any:
    """The cache a forward returned (``out.cache`` or ``out.past_key_values``)."""
    got = out.get("cache") if hasattr(out, "get") else None
    return got if got is not None else out.past_key_values
