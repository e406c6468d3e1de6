"""Spending less compute for the same answer: online early stopping and adaptive allocation,
measured by real runs of ``attractor sample`` in one process (the baselines run in the same
process and on the same questions).

  full          N samples per question, majority vote (the reference)
  deepconf-*    sample --early-stop deepconf:warmup=W,percentile=P,window=K
  consensus     sample --early-stop consensus:min_traces=M,share=S
  uniform/adaptive at budget B   sample --budget B --allocate uniform|adaptive
  probe-stop T  sample --early-stop probe:PATH,threshold=T     (with --probe PATH)
  probe at budget B              sample --budget B --allocate probe:PATH   (with --probe PATH)

A probe must come from other questions than the ones measured: fit it on a run of the first K
questions (attractor probe) and measure here with --offset K.

Tokens are completion tokens actually generated; accuracy is the run's vote: DeepConf's
thresholded, confidence-weighted vote for the deepconf runs (as the reference votes), majority
over the samples with an answer otherwise (cut traces never vote).

Usage: python benchmarks/bench_compute.py [--task prosqa] [--limit 100] [--samples 16]
       [--offset K --probe RUN/probes/correct_n4.safetensors --alloc-probe RUN/probes/stable_n0.safetensors]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from attractor.config import RunConfig, SamplingConfig
from attractor.pipeline.analyze import deepconf_weights, per_question
from attractor.pipeline.sample import run_sample
from attractor.store.run_store import RunStore


def score(run: Path) -> tuple[int, float, float]:
    """(tokens generated, vote accuracy, mean samples per question) of a finished run. The vote
    is the run's own: DeepConf's (thresholded, confidence-weighted) for a deepconf run, else
    majority over the samples with an answer (cut traces never vote)."""
    store = RunStore(run)
    df = store.rollouts(["question_id", "sample_id", "answer_class", "correct", "n_tokens",
                         "finish_reason"])
    rule = store.manifest["config"].get("early_stop") or ""
    weights = deepconf_weights(store, rule) if rule.startswith("deepconf") else None
    q = per_question(df, weights)
    counts = df.groupby("question_id")["n_tokens"].apply(lambda x: int((x > 0).sum()))
    return int(df["n_tokens"].sum()), float(q["majority_correct"].mean()), float(counts.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--task", default="prosqa")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--window", type=int, default=8, help="DeepConf window (tokens).")
    ap.add_argument("--offset", type=int, default=0, help="Skip the first K questions.")
    ap.add_argument("--probe", default=None, help="Probe file for the probe early-stop rows.")
    ap.add_argument("--probe-thresholds", default="0.1,0.3", help="Thresholds for --probe.")
    ap.add_argument("--alloc-probe", default=None, help="Probe file for the probe allocation "
                                                         "rows (default: --probe).")
    args = ap.parse_args()
    n = args.samples
    variants: list[tuple[str, dict]] = [
        ("full", {}),
        ("deepconf-low (keep top 10%)", {"early_stop":
                                         f"deepconf:warmup={n // 4},percentile=90,window={args.window}"}),
        ("deepconf-high (keep top 90%)", {"early_stop":
                                          f"deepconf:warmup={n // 4},percentile=10,window={args.window}"}),
        ("consensus 0.75 of >= 4", {"early_stop": "consensus:min_traces=4,share=0.75"}),
    ]
    if args.probe:
        for thr in args.probe_thresholds.split(","):
            variants.append((f"probe-stop threshold={thr}",
                             {"early_stop": f"probe:{args.probe},threshold={thr}"}))
    policies = ["uniform", "adaptive"]
    if args.alloc_probe or args.probe:
        policies.append(f"probe:{args.alloc_probe or args.probe}")
    con = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def run(name: str, extra: dict) -> tuple[int, float, float, float]:
            cfg = RunConfig(task=args.task, model=args.model, limit=extra.pop("limit", args.limit),
                            offset=args.offset,
                            sampling=SamplingConfig(samples=n, temperature=args.temperature,
                                                    max_new_tokens=args.max_new_tokens, seed=0),
                            **extra)
            out = Path(tmp) / name.replace(" ", "_").replace("/", "_").replace(":", "_")
            t0 = time.perf_counter()
            run_sample(cfg, str(out), log=lambda _: None, show_progress=False)
            wall = time.perf_counter() - t0
            return (*score(out), wall)

        run("warm-up", {"limit": 2})  # one-time costs (imports, first calls) stay out of timings
        ref = run("full", {})
        rows.append(("full", *ref))
        for name, extra in variants[1:]:
            rows.append((name, *run(name, extra)))
        for policy in policies:
            for frac in (0.25, 0.5):
                budget = int(ref[0] * frac)
                label = "probe" if policy.startswith("probe:") else policy
                rows.append((f"{label} @ {frac:.0%} of full tokens",
                             *run(f"{policy}-{frac}", {"allocate": policy, "budget": budget,
                                                       "first_round": 2})))
    t = Table(title=f"{args.model} on {args.task} ({args.limit} questions from "
                    f"{args.offset}), N={n}, "
                    f"T={args.temperature}")
    for c in ("run", "tokens", "tokens saved", "vote acc", "acc - full", "samples/question",
              "wall s", "wall vs full"):
        t.add_column(c)
    for name, tokens, acc, per_q, wall in rows:
        t.add_row(name, f"{tokens:,}", f"{1 - tokens / ref[0]:.1%}", f"{acc:.3f}",
                  f"{acc - ref[1]:+.3f}", f"{per_q:.1f}", f"{wall:.1f}", f"{wall / ref[3]:.2f}x")
    con.print(t)


if __name__ == "__main__":
    main()
