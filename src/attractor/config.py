"""Configuration dataclasses shared by the CLI and the Python API.

Every field has a help string and is a command-line option of the same name
(:mod:`attractor.cli.options`); checks live in ``__post_init__`` and raise
:class:`attractor.errors.ConfigError` naming the field in backticks, which the CLI shows as the
flag (`top_p` -> --top-p).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from attractor.errors import ConfigError


ENGINES = ("hf", "ray", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def option(text: str, default: Any = None, *, factory: Any = None) -> Any:
    """A dataclass field that is a command-line option: its help ``text`` and its default (or
    ``factory`` for a list); :mod:`attractor.cli.options` makes the flag from it."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class SamplingConfig:
    """The whole sampling contract of a run (vLLM's SamplingParams plays the same role)."""

    samples: int = option("Rollouts per question (N).", 16)
    temperature: float = option("Sampling temperature; 0 means greedy.", 1.0)
    top_p: float = option("Nucleus sampling mass, in (0, 1].", 1.0)
    top_k: int = option("Keep the k most likely tokens; 0 keeps all.", 0)
    max_new_tokens: int = option("Token budget of a completion.", 256)
    seed: int = option("Base seed: sample i of every question uses seed + i.", 0)

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"`temperature` must be a finite number >= 0, got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"`top_p` must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"`top_k` must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"`max_new_tokens` must be positive, got {self.max_new_tokens}")
        from attractor.checks import MAX_SAMPLES, check_count, check_seed

        check_count(self.top_k, "`top_k`")
        # a request that would run for days is refused up front, not started in silence
        check_count(self.samples, "`samples`", 1, MAX_SAMPLES)
        check_count(self.max_new_tokens, "`max_new_tokens`", 1)
        check_seed(self.seed, "`seed`", self.samples)
        if self.temperature == 0:
            # greedy decoding ignores the filters; as vLLM's SamplingParams does, normalise them
            # so two greedy runs that differ only in an unused top_p are the same run
            self.top_p, self.top_k = 1.0, 0

    @property
    def greedy(self) -> bool:
        """True when temperature is 0 (argmax decoding)."""
        return self.temperature == 0


@dataclass
class RunConfig:
    """What a ``sample`` run is: task, model, prompt format and sampling. Stored in the
    manifest; a second ``sample`` into the same run directory must match it."""

    task: str = option("Task spec: preset, file, synthetic:NAME or hf:NAME:SPLIT.", "prosqa")
    model: str = option("Model spec: 'tiny', a local directory or a hub id.", "tiny")
    limit: int | None = option("Use only the first Q questions.", None)
    offset: int = option("Skip the first K questions (before --limit): evaluate on questions "
                         "that a probe or steering vector was not built from.", 0)
    grader: str = option("auto | math | exact.", "auto")
    reading: str = option("Which answer reading the run's accuracy uses: strict (the task's "
                          "requested format) or flexible (the last number, or the last option "
                          "named: lm-evaluation-harness's flexible-extract); both are stored.",
                          "strict")
    chat_template: bool = option("Apply the tokenizer's chat template when it has one.", True)
    dtype: str = option("auto | float32 | bfloat16 | float16.", "auto")
    engine: str = option("Sampling engine: hf (transformers), ray (Ray Data workers running hf) "
                        "or vllm.", "hf")
    backend: str = option("With --engine ray: what each worker runs, hf or vllm (its own vLLM "
                          "engine).", "hf")
    early_stop: str | None = option("Online early stop (hf and vllm engines): deepconf:warmup=W,"
                                    "percentile=P,window=K, consensus:min_traces=M,share=S or "
                                    "probe:PATH,threshold=T.",
                                    None)
    allocate: str = option("With --budget: uniform (even spread) or adaptive (more samples for "
                          "questions whose answers disagree).", "uniform")
    budget: int | None = option("Total completion tokens of the run, up to --samples per "
                               "question (unset: every question gets --samples).", None)
    first_round: int = option("Samples every question gets before a budget is allocated.", 2)
    id_field: str | None = option("Field holding the question id.", None)
    question_field: str | None = option("Field holding the question.", None)
    answer_field: str | None = option("Field holding the gold answer.", None)
    steps_field: str | None = option("Field holding CoT steps.", None)
    prompt: str | None = option("Prompt template with {question} (and optionally {instruction}, "
                                "the task's answer-format line): the user turn with a chat "
                                "template, else the whole prompt; a path reads the file.", None)
    steer: str | None = option("Steering vector (.safetensors from 'attractor steer build'), "
                               "hf engine only.", None)
    alpha: float = option("Steering strength for --steer; 0 leaves the model untouched.", 0.0)
    sampling: SamplingConfig = field(default_factory=SamplingConfig,
                                     metadata={"help": "Sampling parameters."})

    def __post_init__(self) -> None:
        from attractor.grading.grade import grader_for
        from attractor.scaling.allocate import check_allocation
        from attractor.scaling.online import parse_rule

        if self.engine not in ENGINES:
            raise ConfigError(f"`engine` must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.backend not in ("hf", "vllm"):
            raise ConfigError(f"`backend` must be hf or vllm, got {self.backend!r}")
        if self.backend != "hf" and self.engine != "ray":
            raise ConfigError("`backend` vllm is for --engine ray (use --engine vllm directly)")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"`limit` must be a positive number of questions, got {self.limit}")
        if self.offset < 0:
            raise ConfigError(f"`offset` must be >= 0, got {self.offset}")
        if not math.isfinite(self.alpha):
            raise ConfigError(f"`alpha` must be a finite number, got {self.alpha}")
        if self.alpha and not self.steer:
            raise ConfigError("`alpha` needs --steer VECTOR.safetensors")
        if self.steer and self.engine != "hf":
            raise ConfigError("`steer` runs in the hf engine only (it hooks the model's MLPs)")
        if self.prompt is not None:
            from attractor.tasks.prompts import resolve_template

            self.prompt = resolve_template(self.prompt)  # the text, not a path, is the identity
        grader_for("math", self.grader)  # validates the grader's name
        from attractor.grading.grade import check_reading

        check_reading(self.reading)
        if self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.engine == "ray" and (self.early_stop or self.budget is not None):
            raise ConfigError("`early_stop` and `budget` run in the hf and vllm engines, not ray")
        if self.early_stop:
            rule = parse_rule(self.early_stop, self.sampling.samples)
            if rule.name == "probe" and self.engine != "hf":
                raise ConfigError("`early_stop` probe:... runs in the hf engine only (it reads "
                                  "hidden states while sampling)")
        check_allocation(self.allocate, self.budget, self.first_round, self.sampling.samples)
        if self.early_stop and self.budget is not None:
            raise ConfigError("`early_stop` and `budget` cannot be combined (both decide how many "
                              "samples a question gets)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)
