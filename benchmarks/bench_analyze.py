"""``attractor analyze`` with AUROC intervals by vectorised ranks against the previous
implementation (one scikit-learn ``roc_auc_score`` call per bootstrap draw), same run, same
process.

The baseline below is the previous ``auroc_row`` loop (500 draws, one ``roc_auc_score`` each),
kept here only to be timed; it is swapped in for the run's analysis and swapped out again. Both
analyses read the same rollouts (and latents with ``--capture``).

Usage: python benchmarks/bench_analyze.py [--questions 50] [--samples 16] [--capture]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import attractor.metrics.signals as signals
from attractor.config import RunConfig, SamplingConfig
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.capture import run_capture
from attractor.pipeline.sample import run_sample


def sklearn_auroc_row(name, target, scores, labels, clusters=None, reps=500, seed=0):
    """The previous implementation's cost: one scikit-learn call per bootstrap draw."""
    from sklearn.metrics import roc_auc_score

    d = signals.direction_of(name)
    if d is None:
        return None
    ok = ~np.isnan(scores)
    s, y = scores[ok], labels[ok].astype(bool)
    if y.all() or not y.any():
        return None
    a = roc_auc_score(y, s)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(s), len(s))
        if y[idx].all() or not y[idx].any():
            continue
        boots.append(roc_auc_score(y[idx], s[idx]))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"signal": name, "family": d.family, "target": target, "auroc": a,
            "direction": d.word, "ci_low": lo, "ci_high": hi, "interval": "bootstrap",
            "n": int(len(s)), "n_positive": int(y.sum()), "n_negative": int((~y).sum()),
            "n_clusters": int(len(s)), "source": d.source}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--capture", action="store_true", help="Capture latents first (chunk:4, "
                    "decisive, frac:0.5 at every layer), as the README's recipe does.")
    args = ap.parse_args()
    con = Console()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = RunConfig(task="prosqa", model="tiny", limit=args.questions,
                        sampling=SamplingConfig(samples=args.samples, temperature=1.0,
                                                max_new_tokens=128, seed=0))
        t0 = time.perf_counter()
        run_sample(cfg, str(run), log=lambda _: None, show_progress=False)
        t_sample = time.perf_counter() - t0
        if args.capture:
            run_capture(str(run), layers="all", positions="frac:0.5,chunk:4,decisive",
                        show_progress=False, log=lambda _: None)
        run_analyze(str(run), window=8)  # warm-up: imports, grading, first calls
        t0 = time.perf_counter()
        run_analyze(str(run), window=8)
        t_new = time.perf_counter() - t0
        current = signals.auroc_row
        signals.auroc_row = sklearn_auroc_row
        try:
            t0 = time.perf_counter()
            run_analyze(str(run), window=8)
            t_old = time.perf_counter() - t0
        finally:
            signals.auroc_row = current
    t = Table(title=f"analyze, tiny on ProsQA: {args.questions} questions x {args.samples} "
                    f"samples{' + latents' if args.capture else ''} (sampling took {t_sample:.1f} s)")
    for c in ("AUROC intervals", "analyze s", "speed-up"):
        t.add_column(c)
    t.add_row("scikit-learn per draw (previous)", f"{t_old:.2f}", "1.00x")
    t.add_row("vectorised ranks, cluster bootstrap", f"{t_new:.2f}", f"{t_old / t_new:.1f}x")
    con.print(t)


if __name__ == "__main__":
    main()
