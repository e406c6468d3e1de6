"""``attractor demo``: the embedded tiny model on ProsQA, from sampling to the stability gap.

Uses the released ProsQA validation file when it is found (``--data-dir``,
``$ATTRACTOR_DATA_DIR`` or ``../shared/data``), else generated ProsQA problems, so it runs
offline on a fresh install.
"""
from __future__ import annotations

from pathlib import Path

from attractor.config import RunConfig, SamplingConfig
from attractor.errors import ConfigError
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.sample import run_sample
from attractor.pipeline.summary_print import print_summary
from attractor.tasks.loaders import PRESETS, default_data_dir
from attractor.ui import console


def run_demo(out: str, questions: int = 50, samples: int = 16, temperature: float = 1.0,
             data_dir: str | None = None) -> dict:
    """Sample, analyse and print; returns the summary."""
    if questions <= 0:
        raise ConfigError(f"--questions must be a positive integer, got {questions}")
    base = data_dir or default_data_dir()
    if base is not None and (Path(base) / PRESETS["prosqa"]["file"]).exists():
        task = "prosqa"
    else:
        task = f"synthetic:prosqa:n={questions},seed=12345"
        console.print("ProsQA file not found; using generated ProsQA problems")
    cfg = RunConfig(task=task, model="tiny", limit=questions,
                    sampling=SamplingConfig(samples=samples, temperature=temperature,
                                            max_new_tokens=128, seed=0))
    console.print(f"[bold]attractor demo[/bold]: tiny model, {task}, {questions} questions x "
                  f"{samples} samples at T={temperature} -> {out}")
    res = run_sample(cfg, out, data_dir=str(base) if base else None, log=console.print)
    if res["status"] == "done":
        console.print(f"sampled {res['new_rollouts']} rollouts in {res['elapsed_s']:.1f} s "
                      f"({res['tokens_per_s']:.0f} tokens/s)")
    summary = run_analyze(out, window=8)  # the embedded model writes ~15-token chains
    print_summary(summary, title="demo")
    gap = summary["stability_gap"]
    right, wrong = gap["majority_correct"], gap["majority_wrong"]
    if right["n_questions"] and wrong["n_questions"]:
        console.print(f"[bold]stability gap[/bold]: top-1 share {right['top1_share']:.2f} when the "
                      f"majority is right vs {wrong['top1_share']:.2f} when it is wrong; entropy "
                      f"{right['answer_entropy_nats']:.2f} vs {wrong['answer_entropy_nats']:.2f} nats")
    console.print(f"tables: {out}/metrics/questions.parquet, {out}/metrics/summary.json")
    return summary
