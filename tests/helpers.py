"""Helpers for tests that run the real ``attractor`` command in a subprocess."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def attractor(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m attractor ARGS`` and return the completed process."""
    proc = subprocess.run([sys.executable, "-m", "attractor", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"attractor {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file below ``path`` (to prove a directory was left untouched)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}
