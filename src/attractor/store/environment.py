"""The manifest's record of the machine and the library versions a run used."""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from importlib import metadata
from typing import Any

import attractor


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_INVOCATION: list[str] | None = None


def set_invocation(argv: list[str]) -> None:
    """Record the command line being run (``attractor.cli.main`` calls this), so manifests name
    the command even when it runs inside another program (a notebook, a test)."""
    global _INVOCATION
    _INVOCATION = list(argv)


def command_line() -> list[str]:
    """The command being run: ``["attractor", "sample", ...]`` under the CLI, else sys.argv."""
    return list(_INVOCATION) if _INVOCATION is not None else list(sys.argv)


def now() -> str:
    """UTC time in ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Hardware (CPU, cores, memory, GPU) and versions (python, torch, transformers, vllm, ray)."""
    import torch

    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_bytes": props.total_memory,
               "count": torch.cuda.device_count()}
    return {
        "hardware": {"platform": platform.platform(), "cpu": platform.processor() or
                     platform.machine(), "cpu_count": os.cpu_count(), "memory_bytes": mem,
                     "gpu": gpu, "torch_threads": torch.get_num_threads()},
        "versions": {"attractor": attractor.__version__, "python": sys.version.split()[0],
                     **{k: _version(k) for k in ("torch", "transformers", "tokenizers",
                                                 "math-verify", "pyarrow", "vllm", "ray")}},
    }
