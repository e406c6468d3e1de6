"""``attractor demo``: from sampling to the stability gap, on the embedded tiny model or on a
real pretrained one.

``--model tiny`` (the default) samples ProsQA: the released validation file when it is found
(``--data-dir``, ``$ATTRACTOR_DATA_DIR`` or ``../shared/data``), else generated ProsQA problems,
so it runs offline on a fresh install. Any other model (``smollm2``, a directory, a GGUF file)
samples one-step arithmetic written as an expression ("What is 7 * 8?") and grades the
flexible reading: measured on SmolLM2-135M-Instruct, the task on which it is right 20-80% of
the time (GSM8K, even its two-step questions, is under 5%: no stability gap to show).
``--task`` overrides either choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attractor.config import RunConfig, SamplingConfig
from attractor.errors import ConfigError
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.sample import run_sample
from attractor.pipeline.summary_print import print_summary
from attractor.tasks.loaders import PRESETS, default_data_dir
from attractor.ui import console

REAL_MODEL_TASK = "synthetic:arith:hops=1,style=expr,seed=2026"


@dataclass(frozen=True)
class DemoPlan:
    """What a demo samples: the defaults of a model, before the user's options."""

    task: str
    questions: int
    samples: int
    temperature: float
    max_new_tokens: int
    reading: str
    window: int   # DeepConf's group size: it must fit the model's chains


def default_plan(model: str, data_dir: str | None) -> DemoPlan:
    """The embedded model: ProsQA, 50 x 16 at T = 1 (~15-token chains, window 8); a real
    model: one-step arithmetic, 24 x 8 at T = 0.7, 192 tokens (~90-token chains, window 16)."""
    if model != "tiny":
        return DemoPlan(REAL_MODEL_TASK + ",n={n}", 24, 8, 0.7, 192, "flexible", 16)
    if data_dir is not None and (Path(data_dir) / PRESETS["prosqa"]["file"]).exists():
        return DemoPlan("prosqa", 50, 16, 1.0, 128, "strict", 8)
    console.print("ProsQA file not found; using generated ProsQA problems")
    return DemoPlan("synthetic:prosqa:n={n},seed=12345", 50, 16, 1.0, 128, "strict", 8)


def run_demo(out: str, model: str = "tiny", task: str | None = None,
             questions: int | None = None, samples: int | None = None,
             temperature: float | None = None, data_dir: str | None = None) -> dict:
    """Sample, analyse and print; returns the summary. Unset options take the model's plan."""
    for name, value in (("--questions", questions), ("--samples", samples)):
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    base = data_dir or default_data_dir()
    plan = default_plan(model, str(base) if base else None)
    n = questions or plan.questions
    task = task or plan.task.replace("{n}", str(n))
    samples = samples or plan.samples
    temperature = plan.temperature if temperature is None else temperature
    cfg = RunConfig(task=task, model=model, limit=n, reading=plan.reading,
                    sampling=SamplingConfig(samples=samples, temperature=temperature,
                                            max_new_tokens=plan.max_new_tokens, seed=0))
    console.print(f"[bold]attractor demo[/bold]: {model} model, {task}, {n} questions x "
                  f"{samples} samples at T={temperature}, {plan.max_new_tokens} tokens, "
                  f"{plan.reading} reading -> {out}")
    res = run_sample(cfg, out, data_dir=str(base) if base else None, log=console.print)
    if res.status == "done":
        console.print(f"sampled {res.new_rollouts} rollouts in {res.elapsed_s:.1f} s "
                      f"({res.tokens_per_s:.0f} tokens/s)")
    summary = run_analyze(out, window=plan.window)
    print_summary(summary, title="demo")
    gap = summary["stability_gap"]
    right, wrong = gap["majority_correct"], gap["majority_wrong"]
    if right["n_questions"] and wrong["n_questions"]:
        console.print(f"[bold]stability gap[/bold]: top-1 share {right['top1_share']:.2f} when the "
                      f"majority is right vs {wrong['top1_share']:.2f} when it is wrong; entropy "
                      f"{right['answer_entropy_nats']:.2f} vs {wrong['answer_entropy_nats']:.2f} nats "
                      f"({right['n_questions']} vs {wrong['n_questions']} questions)")
    else:
        side = "right" if right["n_questions"] else "wrong"
        console.print(f"[bold]stability gap[/bold]: none to show: the majority was {side} on "
                      "every question (more questions or another task)")
    console.print(f"tables: {out}/metrics/questions.parquet, {out}/metrics/summary.json")
    return summary
