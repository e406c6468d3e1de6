"""The options of ``attractor latent seek`` (LatentSeek; see :mod:`attractor.latent.seek.search`),
kept apart from the search so the CLI validates them without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

from attractor.config import option
from attractor.errors import ConfigError

REWARDS = ("vote", "oracle")


@dataclass
class SeekConfig:
    """LatentSeek's knobs (every field is a CLI option of the same name)."""

    iterations: int = option("Most policy-gradient updates per question.", 10)
    samples: int = option("Answers sampled per update.", 8)
    lr: float = option("Adam step in units of each thought's RMS per element.", 0.1)
    temperature: float = option("Sampling temperature of the answers.", 1.0)
    reward: str = option("vote (label-free: agree with the samples' majority) or oracle (reads the "
                     "gold answer: an upper bound only).", "vote")
    threshold: float = option("Stop a question once its samples' mean reward reaches this.", 0.9)
    max_new_tokens: int = option("Token budget of each sampled answer.", 16)
    batch: int = option("Questions optimised side by side.", 8)
    seed: int = option("Sampling seed.", 0)

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ConfigError(f"`reward` must be {' or '.join(REWARDS)}, got {self.reward!r}")
        for name in ("iterations", "samples", "max_new_tokens", "batch"):
            if getattr(self, name) < (0 if name == "iterations" else 1):
                raise ConfigError(f"`{name}` must be "
                                  f"{'>= 0' if name == 'iterations' else '>= 1'}, "
                                  f"got {getattr(self, name)}")
        from attractor.checks import check_number, check_seed

        for name in ("lr", "temperature"):
            check_number(getattr(self, name), f"`{name}`", 0, above=True)
        check_seed(self.seed, "`seed`", self.samples)
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"`threshold` must be in (0, 1], got {self.threshold}")
