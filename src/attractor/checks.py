"""One check per concept, shared by every command and config that takes it (so the same bad
value is refused the same way everywhere, before anything is written).

Each raises :class:`~attractor.errors.ConfigError` naming the option and what was expected.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from attractor.errors import ConfigError

# the largest seed torch, numpy and vLLM all take (a signed 64-bit integer)
MAX_SEED = 2**63 - 1
# the largest count a C int holds (Parquet int32 columns, torch's top-k, vLLM's max_tokens)
MAX_COUNT = 2**31 - 1
# samples per question: 10^5 already takes days on a GPU for a 1.5B model at 1k tokens; a larger
# request is a typo (a refusal up front beats a silent start that never ends)
MAX_SAMPLES = 100_000
# random k-subsets per question and k in vote (300 by default; 10^5 is already ~100x tighter
# than any interval it feeds)
MAX_DRAWS = 100_000
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_seed(seed: int, option: str = "--seed", consecutive: int = 1) -> int:
    """A base seed in [0, 2^63 - 1] whose ``consecutive`` seeds (seed + i) stay in range."""
    if seed < 0 or seed + consecutive - 1 > MAX_SEED:
        raise ConfigError(f"{option} must be in 0..{MAX_SEED - consecutive + 1}, got {seed}")
    return seed


def check_count(value: int, option: str, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    """An integer option in [minimum, maximum]."""
    if not minimum <= value <= maximum:
        raise ConfigError(f"{option} must be in {minimum}..{maximum}, got {value}")
    return value


def check_device(device: str, option: str = "--device") -> str:
    """auto, cpu, mps, cuda or cuda:N (whether the device exists is checked when a model
    loads)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"{option}: expected auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def check_number(value: float, option: str, minimum: float = float("-inf"),
                 maximum: float = float("inf"), above: bool = False) -> float:
    """A finite number in [minimum, maximum] (``above``: strictly greater than minimum);
    NaN and infinities are refused (they pass every comparison-based check unnoticed)."""
    import math

    low_ok = value > minimum if above else value >= minimum
    if not math.isfinite(value) or not low_ok or value > maximum:
        lo = f"> {minimum}" if above else f">= {minimum}"
        hi = f" and <= {maximum}" if math.isfinite(maximum) else ""
        raise ConfigError(f"{option} must be a finite number {lo}{hi}, got {value}")
    return value


def check_destination(path: "str | os.PathLike", option: str = "--out",
                      kind: str = "directory") -> Path:
    """A place a command will write (a ``directory`` it creates or fills, or a ``file`` it
    creates or replaces): refused when it exists as the other kind, or when it cannot be
    written. Writability is tried, not inferred from permission bits (which root and
    read-only mounts make misleading): a temporary file is made and removed in the
    destination, or in its nearest existing ancestor when it does not exist yet."""
    import tempfile

    target = Path(path)
    if target.exists() and kind == "directory" and not target.is_dir():
        raise ConfigError(f"{option} {target}: exists and is a file, not a directory")
    if target.exists() and kind == "file" and target.is_dir():
        raise ConfigError(f"{option} {target}: is a directory, expected a file path")
    probe = target if (kind == "directory" and target.is_dir()) else target.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{option} {target}: {probe} is a file, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".attractor-write-check.")
    except OSError as err:
        raise ConfigError(f"{option} {target}: cannot write in {probe} "
                          f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(tmp)
    return target


def check_positive(value: int, option: str) -> int:
    """An integer option that must be at least 1 (sizes, counts of draws, batch budgets)."""
    return check_count(value, option, minimum=1)
