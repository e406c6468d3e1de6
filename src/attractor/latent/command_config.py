"""The options of ``attractor latent eval`` and ``attractor latent inspect``, kept apart from the
code that runs them so the CLI validates them without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

from attractor.config import option
from attractor.errors import ConfigError

ADAPTIVE_HALTINGS = ("state", "kl", "token")
INTERVENTIONS = ("zero", "mean", "swap")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit <= 0:
        raise ConfigError(f"`limit` must be a positive number of questions, got {limit}")


@dataclass
class EvalConfig:
    """What ``attractor latent eval`` evaluates and how (every field is a CLI option)."""

    task: list[str] = option("Task(s) to evaluate on (repeatable).", factory=lambda: ["prosqa"])
    model: str = option("Base model spec the checkpoints were trained on.", "tiny")
    limit: int | None = option("Only the first Q questions.", None)
    epsilon: float = option("Threshold of the adaptive-halting rows.", 1e-2)
    halting: list[str] = option("Adaptive halting of the extra row per fixed-T loop (repeatable): "
                            "state, kl or token (stop where the lens names the answer marker; "
                            "loops trained with --thought-loss learn it).",
                            factory=lambda: ["state"])
    soft_thoughts: int = option("Most soft thoughts of the training-free soft-thinking row (0: no "
                            "row).", 12)
    max_new_tokens: int = option("Token budget of every row's greedy decoding (after the thoughts, "
                             "if any).", 96)
    device: str = option("cpu, cuda[:i] or auto.", "auto")
    compression: list[int] = option("Compression factors c of a colar checkpoint's colar@c rows "
                                "(repeatable).", factory=lambda: [1, 2, 3, 5])
    latent_temperature: float = option("Temperature of a colar checkpoint's latents (CoLaR "
                                   "samples at 1; 0: the head's mean); seeded per question.",
                                   1.0)

    def __post_init__(self) -> None:
        from attractor.checks import check_device, check_number

        check_number(self.latent_temperature, "`latent_temperature`", 0)
        check_device(self.device, "`device`")
        self.task, self.halting = list(self.task), list(dict.fromkeys(self.halting))
        self.compression = list(dict.fromkeys(self.compression))
        if not self.compression or any(c < 1 for c in self.compression):
            raise ConfigError(f"`compression` factors must be >= 1, got {self.compression}")
        if not self.task:
            raise ConfigError("`task`: name at least one task")
        _check_limit(self.limit)
        if not self.epsilon > 0:
            raise ConfigError(f"`epsilon` must be > 0, got {self.epsilon}")
        if self.soft_thoughts < 0:
            raise ConfigError(f"`soft_thoughts` must be >= 0, got {self.soft_thoughts}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")
        bad = [h for h in self.halting if h not in ADAPTIVE_HALTINGS]
        if bad:
            raise ConfigError(f"`halting` must be {', '.join(ADAPTIVE_HALTINGS[:-1])} or "
                              f"{ADAPTIVE_HALTINGS[-1]}, got {bad[0]!r}")


@dataclass
class InspectConfig:
    """What ``attractor latent inspect`` reads on a loop (every field is a CLI option)."""

    task: str = option("Task to read the thoughts on.", "prosqa")
    model: str = option("Base model spec the checkpoint was trained on.", "tiny")
    limit: int | None = option("Only the first Q questions.", 100)
    sigma: str = option("Relative noise scales for the flip rate (comma-separated).", "0.1,0.3,1.0")
    interventions: str = option("Causal interventions on each thought, comma-separated: zero, mean "
                            "(mean ablation), swap (another question's thought); empty: none.",
                            "zero,mean,swap")
    compression: list[int] = option("On a colar checkpoint: the compression factors whose "
                                "latents are checked against same-norm random ones "
                                "(repeatable).", factory=lambda: [1, 2, 3, 5])

    def __post_init__(self) -> None:
        _check_limit(self.limit)
        self.compression = list(dict.fromkeys(self.compression))
        if not self.compression or any(c < 1 for c in self.compression):
            raise ConfigError(f"`compression` factors must be >= 1, got {self.compression}")
        try:
            sigmas = [float(x) for x in self.sigma.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"`sigma` must be comma-separated numbers, got {self.sigma!r}") \
                from None
        if not sigmas or any(not x > 0 for x in sigmas):
            raise ConfigError(f"`sigma` values must be > 0, got {self.sigma!r}")
        kinds = tuple(dict.fromkeys(k.strip() for k in self.interventions.split(",")
                                    if k.strip()))
        if any(k not in INTERVENTIONS for k in kinds):
            raise ConfigError(f"`interventions` must name {', '.join(INTERVENTIONS)}, got "
                              f"{self.interventions!r}")
        self.sigmas: tuple[float, ...] = tuple(sigmas)
        self.kinds: tuple[str, ...] = kinds
