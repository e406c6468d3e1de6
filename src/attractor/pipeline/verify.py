"""``attractor verify RUN``: list a run's damaged files (rollout shards, latent shards and
index, metric tables) without changing anything."""
from __future__ import annotations

from pathlib import Path

from attractor.store.integrity import Damage, damaged_shards, read_record
from attractor.store.run_store import RunStore, open_run

# how each folder's damage is repaired
REPAIR = {"rollouts": "run the run's own `attractor sample` command to sample the damaged "
                      "shards again from their seeds",
          "latents": "run the run's own `attractor capture` command to capture their rollouts "
                     "again",
          "metrics": "run `attractor analyze` (and the command that wrote it) to rewrite it"}


def verify_run(run: str) -> tuple[int, list[Damage]]:
    """(rollout shards checked, damage found): every recorded file's size, sha256 and structure
    against the record written with it. Raises UserError when ``run`` is not a run
    directory."""
    store = open_run(run, writes=False, partial=True, check=False)
    damage = damaged_shards(store.rollout_dir, deep=True)
    damage += store.hidden_store.damage(deep=True)
    damage += damaged_shards(store.path / "metrics", deep=True, pattern=None)
    return len(store.rollout_shards()), damage


def verify_lines(run: str, checked: int, damage: list[Damage]) -> list[str]:
    """What ``verify`` prints: one line per damaged file, then what to do (or that all is
    well, and whether the run predates shard records)."""
    if not damage:
        legacy = read_record(Path(run) / "rollouts") is None and checked
        return [f"{run}: {checked} rollout shards verified" + (
            " (written before shard records: only their footers were checked)" if legacy
            else " (size and sha256 as written)") + _others(run)]
    folders = dict.fromkeys(d.path.parent.name for d in damage)
    rollouts = [d for d in damage if d.path.parent.name == "rollouts"]
    head = (f"{len(rollouts)} damaged of {checked + sum(not d.path.exists() for d in rollouts)} "
            "rollout shards" if rollouts else f"{len(damage)} damaged files")
    return [d.line() for d in damage] + [
        f"{head}; " + "; ".join(REPAIR.get(f, "") for f in folders if f in REPAIR)
        + " (the damaged files are kept in _damaged/ beside them)"]


def _others(run: str) -> str:
    """What else was verified (latents and metric tables with records)."""
    store = RunStore(run)
    parts = []
    for folder in ("latents", "metrics"):
        record = read_record(store.path / folder)
        if record:
            parts.append(f"{len(record)} {folder} files")
    return (", and " + " and ".join(parts)) if parts else ""
