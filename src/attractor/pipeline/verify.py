"""``attractor verify RUN``: list a run's damaged rollout shards without changing anything."""
from __future__ import annotations

from pathlib import Path

from attractor.errors import UserError
from attractor.store.integrity import Damage, damaged_shards, read_record
from attractor.store.run_store import RunStore


def verify_run(run: str) -> tuple[int, list[Damage]]:
    """(shards checked, damage found): every rollout shard's size, sha256 and footer against
    the record written with it. Raises UserError when ``run`` is not a run directory."""
    store = RunStore(run)
    if not store.exists():
        raise UserError(f"{run}: not a run directory (no manifest.json)")
    damage = damaged_shards(store.rollout_dir, deep=True)
    return len(store.rollout_shards()), damage


def verify_lines(run: str, checked: int, damage: list[Damage]) -> list[str]:
    """What ``verify`` prints: one line per damaged shard, then what to do (or that all is
    well, and whether the run predates shard records)."""
    if not damage:
        legacy = read_record(Path(run) / "rollouts") is None and checked
        return [f"{run}: {checked} rollout shards verified" + (
            " (written before shard records: only their footers were checked)" if legacy
            else " (size and sha256 as written)")]
    return [d.line() for d in damage] + [
        f"{len(damage)} damaged of {checked + sum(not d.path.exists() for d in damage)} "
        f"shards; run the run's own `attractor sample` command to sample them again from their "
        "seeds (the damaged files are kept in rollouts/_damaged/)"]
