"""The bookkeeping every trainer does after an optimiser step and after an epoch: the position
(``pos``: step, batch, epoch, as :mod:`attractor.training.state` saves it), the progress bar
showing the recent loss, and the checkpoint cadence. Written once here for the latent trainers."""
from __future__ import annotations

from typing import Any, Callable


def recent_loss(losses: list[float], last: int = 20) -> float:
    """Mean of the last ``last`` losses (0.0 before the first step)."""
    tail = losses[-last:]
    return sum(tail) / max(1, len(tail))


def after_step(pos: dict[str, Any], losses: list[float], loss: float, bar: Any, task: Any,
               what: str, ckpt_every: int, save: Callable[[], None]) -> None:
    """Record ``loss``, advance the position and the bar (``what`` and the recent loss), and
    save the resumable state every ``ckpt_every`` steps."""
    losses.append(loss)
    pos["batch"] += 1
    pos["step"] += 1
    bar.update(task, advance=1, description=f"{what} loss {recent_loss(losses):.3f}")
    if pos["step"] % ckpt_every == 0:
        save()


def after_epoch(pos: dict[str, Any]) -> None:
    """An epoch is done: the next starts at batch 0."""
    pos["batch"] = 0
    pos["epoch"] += 1
