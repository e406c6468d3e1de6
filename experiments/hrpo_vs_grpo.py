"""HRPO against plain GRPO on the same budget, several seeds each (issue 22, part 2).

Both arms run the same trainer (``attractor latent train --method hrpo|grpo``: grpo is HRPO with
the gates closed, a = 1, which samples bit for bit as plain sampling), on the same questions,
steps, group, temperature, learning rates and KL; only the hybrid inputs differ. Each trained
model is scored greedily on the evaluation task (default ProsQA validation); the report gives
every run's accuracy, each arm's mean over seeds, and the difference HRPO - GRPO with two 95%
intervals: a paired bootstrap over questions of the seed-averaged correctness (question
sampling), and Welch's t over the seeds' accuracies (training noise; wide with three seeds).
Runs are resumable (each run directory resumes), results go to ``OUT/hrpo_vs_grpo.json``.

Usage:
  python experiments/hrpo_vs_grpo.py --out runs/hrpo-vs-grpo            # 3 seeds, 100 steps
  python experiments/hrpo_vs_grpo.py --out runs/x --steps 20 --seeds 0 1 --eval-task \
      "synthetic:prosqa:n=100,seed=2024"
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from attractor.latent.evaluate import evaluate
from attractor.latent.slr.train import train_latent
from attractor.latent.slr.train_config import LatentTrainConfig
from attractor.metrics.answers import bootstrap_ci


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", default="synthetic:prosqa:n=512,seed=31",
                    help="training questions (outcome reward: needs gold answers)")
    ap.add_argument("--eval-task", default="prosqa")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cot-format", default="task",
                    help="recorded in the checkpoints: the chain the base model writes "
                         "(backward-proof for the embedded model on ProsQA)")
    args = ap.parse_args()
    console = Console()
    out = Path(args.out)
    runs: dict[tuple[str, int], Path] = {}
    for seed in args.seeds:
        for method in ("grpo", "hrpo"):
            path = out / f"{method}-seed{seed}"
            cfg = LatentTrainConfig(method=method, task=args.task, out=str(path), seed=seed,
                                    rl_steps=args.steps, batch_size=args.batch_size,
                                    group_size=args.group_size, lr=args.lr, ckpt_every=25,
                                    cot_format=args.cot_format)
            res = train_latent(cfg, log=console.print, data_dir=args.data_dir)
            console.print(f"{method} seed {seed}: reward {res['first_reward']:.3f} -> "
                          f"{res['final_reward']:.3f}, {res['tokens_per_s']:.0f} tokens/s")
            runs[(method, seed)] = path
    questions: list[dict] = []
    df = evaluate(args.eval_task, list(runs.values()), data_dir=args.data_dir, soft_thoughts=0,
                  questions=questions)
    base = float(df[df.method == "cot"].accuracy.iloc[0])
    by_run: dict[tuple[str, int], dict[str, bool]] = {}
    for (method, seed), path in runs.items():
        src = str(path)
        by_run[(method, seed)] = {q["id"]: bool(q["correct"]) for q in questions
                                  if q["checkpoint"] == src and q["method"] == method}
    ids = sorted(next(iter(by_run.values())))
    acc = {k: float(np.mean([v[i] for i in ids])) for k, v in by_run.items()}
    per_q = {m: np.mean([[by_run[(m, s)][i] for i in ids] for s in args.seeds], axis=0)
             for m in ("grpo", "hrpo")}
    diff, lo, hi = bootstrap_ci(list(per_q["hrpo"] - per_q["grpo"]))
    a = [acc[("hrpo", s)] for s in args.seeds]
    b = [acc[("grpo", s)] for s in args.seeds]
    if len(args.seeds) > 1:
        va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1)) + (vb ** 2 / (len(b) - 1))) \
            if va + vb > 0 else 1.0
        t = stats.t.ppf(0.975, dof)
        welch = (float(np.mean(a) - np.mean(b) - t * se), float(np.mean(a) - np.mean(b) + t * se))
    else:
        welch = (float("nan"), float("nan"))
    table = Table(title=f"HRPO vs GRPO on {args.eval_task} ({args.steps} steps x "
                        f"{args.batch_size} questions x {args.group_size} samples, lr {args.lr})")
    for col in ("arm", *[f"seed {s}" for s in args.seeds], "mean"):
        table.add_column(col)
    for m in ("grpo", "hrpo"):
        vals = [acc[(m, s)] for s in args.seeds]
        table.add_row(m, *[f"{v:.3f}" for v in vals], f"{np.mean(vals):.3f}")
    console.print(table)
    console.print(f"untrained base (greedy CoT): {base:.3f}")
    console.print(f"HRPO - GRPO: {diff:+.3f}; 95% paired bootstrap over questions "
                  f"[{lo:+.3f}, {hi:+.3f}]; 95% Welch over seeds [{welch[0]:+.3f}, "
                  f"{welch[1]:+.3f}]")
    (out / "hrpo_vs_grpo.json").write_text(json.dumps({
        "args": vars(args), "base_accuracy": base,
        "accuracy": {f"{m}-seed{s}": acc[(m, s)] for (m, s) in acc},
        "difference": diff, "bootstrap_95": [lo, hi], "welch_95": list(welch),
        "rows": df.to_dict(orient="records")}, indent=2, default=str))


if __name__ == "__main__":
    main()
