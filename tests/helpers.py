"""Helpers for tests that run the real ``attractor`` command.

The command runs in this process through :func:`attractor.cli.main` (the same entry point the
console script calls), so a test pays for neither a Python start nor a torch import. The few
tests that need a real process (killing a run, the demo, Ray) pass ``subprocess=True``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def attractor(*args: str, check: bool = True, timeout: int = 600,
              subprocess_run: bool = False) -> subprocess.CompletedProcess:
    """Run ``attractor ARGS`` and return a completed process (returncode, stdout, stderr).

    In process by default: exit codes, stdout and stderr are those ``python -m attractor``
    gives (user errors exit 2 with one line, crashes exit 1 with the traceback)."""
    if subprocess_run:
        proc = subprocess.run([sys.executable, "-m", "attractor", *args], capture_output=True,
                              text=True, env=ENV, timeout=timeout)
    else:
        proc = _in_process(list(args))
    if check and proc.returncode != 0:
        raise AssertionError(f"attractor {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _in_process(argv: list[str]) -> subprocess.CompletedProcess:
    from attractor.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # what the interpreter prints for an uncaught exception, exit 1
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(["attractor", *argv], code, out.getvalue(),
                                       err.getvalue())


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file below ``path`` (to prove a directory was left untouched)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def drop_shard(shard) -> None:
    """Remove a rollout shard as a killed run leaves it: never written, so not in the run's
    shard record either (a recorded shard that is missing is damage, not a kill)."""
    from attractor.store.integrity import forget_shard

    shard.unlink()
    forget_shard(shard.parent, shard.name)
