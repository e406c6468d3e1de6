"""The configuration of a :class:`~attractor.latent.slr.loop.LatentLoop`: its stabilisers and halting."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from attractor.config import option
from attractor.errors import ConfigError

FEEDBACKS = ("hidden", "soft")
TIMESTEPS = ("none", "sinusoidal", "learned")
TIMESTEP_MODES = ("add", "concat")
RESIDUALS = ("none", "h0", "prev")
HALTING = ("fixed", "state", "kl", "token")


@dataclass
class LoopConfig:
    """Continuous thoughts and their stabilisers (every one switchable)."""

    max_thoughts: int = option("T: thoughts per question (the most, under adaptive halting).", 6)
    feedback: str = option("What a thought feeds back: hidden (the last hidden state, Coconut) or "
                       "soft (the logit lens's probability-weighted mix of token embeddings: "
                       "Soft Thinking / CoT2, works on an untrained model).", "hidden")
    soft_temperature: float = option("Temperature of the soft feedback's distribution.", 1.0)
    halting: str = option("fixed (always T), state (relative change of the state < epsilon), kl "
                      "(KL between successive logit-lens distributions < epsilon) or token (the "
                      "lens's top token is halt_token: Soft Thinking's end of thinking).", "fixed")
    epsilon: float = option("Halting threshold.", 1e-2)
    halt_token: str = option("Text whose first token ends thinking under halting=token.", " ###")
    timestep: str = option("Timestep embedding e_t: none, sinusoidal or learned.", "none")
    timestep_mode: str = option("How e_t joins the thought: add, or concat then project.", "add")
    lora_rank: int = option("Rank of the loop-wise LoRA (one adapter per iteration); 0 disables.", 0)
    lora_alpha: float = option("LoRA scale numerator (scale = alpha / rank).", 8.0)
    lora_targets: tuple[str, ...] = option("Linear layers that get loop-wise adapters.",
                                       ("q_proj", "v_proj"))
    residual: str = option("Loop residual: none, h0 (+ alpha * h_0) or prev (+ alpha * h_{t-1}).",
                       "none")
    residual_alpha: float = option("Loop residual weight alpha.", 0.5)
    norm_match: bool = option("Rescale fed-back states to the mean token-embedding norm.", False)
    end_marker: str = option("Text fed after the thoughts before decoding (Coconut's <eot>); empty: "
                         "the text simply continues after the thoughts, as they replace the "
                         "first CoT steps.", "")

    def __post_init__(self) -> None:
        if self.max_thoughts < 1:
            raise ConfigError(f"thoughts (T) must be >= 1, got {self.max_thoughts}")
        if self.epsilon <= 0:
            raise ConfigError(f"epsilon must be > 0, got {self.epsilon}")
        if self.soft_temperature <= 0:
            raise ConfigError(f"soft_temperature must be > 0, got {self.soft_temperature}")
        for name, value, allowed in (("feedback", self.feedback, FEEDBACKS),
                                     ("halting", self.halting, HALTING),
                                     ("timestep", self.timestep, TIMESTEPS),
                                     ("timestep_mode", self.timestep_mode, TIMESTEP_MODES),
                                     ("residual", self.residual, RESIDUALS)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be >= 0, got {self.lora_rank}")
        self.lora_targets = tuple(self.lora_targets)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopConfig":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        known = {f for f in cls.__dataclass_fields__}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"loop config: unknown fields {', '.join(bad)}")
        return cls(**d)


# The stabiliser presets the evaluation table compares (``method`` names).
def preset(method: str, max_thoughts: int = 6) -> LoopConfig:
    """``coconut`` (the bare loop), ``slr`` (every stabiliser) and ``slr-minus-<name>``; the
    ``cot`` and ``no-cot`` baselines are plain models (a loop that never thinks)."""
    full = dict(max_thoughts=max_thoughts, timestep="sinusoidal", lora_rank=4, residual="h0",
                norm_match=True)
    if method in ("cot", "no-cot"):
        return LoopConfig(max_thoughts=1)
    if method == "soft-thinking":
        return LoopConfig(max_thoughts=max_thoughts, feedback="soft", soft_temperature=0.3,
                          halting="token")
    if method == "coconut":
        return LoopConfig(max_thoughts=max_thoughts)
    if method == "slr":
        return LoopConfig(**full)
    drop = {"slr-minus-timestep": {"timestep": "none"}, "slr-minus-lora": {"lora_rank": 0},
            "slr-minus-residual": {"residual": "none"}, "slr-minus-norm": {"norm_match": False}}
    if method in drop:
        return LoopConfig(**{**full, **drop[method]})
    raise ConfigError(f"unknown loop method {method!r}; expected cot, no-cot, soft-thinking, "
                      "coconut, slr or " + ", ".join(drop))


# Fields a ``--loop`` override may not set: other options of ``latent train`` own them.
OWNED = {"max_thoughts": "--stages and --thoughts-per-step", "halting": "--halting",
         "epsilon": "--epsilon", "feedback": "--feedback",
         "soft_temperature": "--soft-temperature"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_override(item: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` override of a :class:`LoopConfig` field, its value converted to the
    field's type (``lora_targets=q_proj,v_proj,gate_proj``; booleans true/false)."""
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    kinds = {f.name: type(f.default) for f in fields(LoopConfig)}
    if not sep or not key:
        raise ConfigError(f"--loop {item!r}: expected KEY=VALUE")
    if key not in kinds:
        raise ConfigError(f"--loop {item!r}: unknown field '{key}' (expected one of "
                          f"{', '.join(k for k in kinds if k not in OWNED)})")
    if key in OWNED:
        raise ConfigError(f"--loop {item!r}: set {key} with {OWNED[key]}")
    kind = kinds[key]
    try:
        if kind is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError
            return key, raw.lower() in _TRUE
        if kind is tuple:
            names = tuple(x.strip() for x in raw.split(",") if x.strip())
            if not names:
                raise ValueError
            return key, names
        return key, kind(raw)
    except ValueError:
        what = {bool: "true or false", tuple: "comma-separated layer names", int: "an integer",
                float: "a number"}.get(kind, "a value")
        raise ConfigError(f"--loop {item!r}: {key} needs {what}") from None


def with_overrides(cfg: LoopConfig, items: list[str] | tuple[str, ...]) -> LoopConfig:
    """``cfg`` with each ``KEY=VALUE`` of ``items`` applied (checked as a whole config)."""
    return replace(cfg, **dict(parse_override(i) for i in items)) if items else cfg


def variant_name(method: str, items: list[str] | tuple[str, ...]) -> str:
    """How evaluation tables name a loop trained with overrides: ``slr+lora_rank=8``."""
    return method + "".join("+" + "=".join(map(str.strip, i.split("=", 1))).replace(" ", "")
                            for i in items)
