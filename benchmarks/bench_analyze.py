"""``attractor analyze`` against its previous implementation, same run, same process.

The baseline swaps in the two previous hot loops, kept here only to be timed: the AUROC
interval with one scikit-learn ``roc_auc_score`` call per bootstrap draw (500 draws a signal),
and maj@k with one ``Counter`` per random subset (2,000 subsets a k). Today's code computes both
vectorised over all draws (ranks for the AUROC). Both analyses read the same rollouts (and
latents with ``--capture``).

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

import attractor.metrics.answers as answers
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


def counter_maj_at_k(classes, correct_of, k, draws=2000, seed=0):
    """The previous maj@k: one Counter per subset."""
    import math
    from collections import Counter
    from itertools import combinations

    n = len(classes)
    if k >= n:
        subsets = [np.arange(n)]
    elif math.comb(n, k) <= draws:
        subsets = (np.array(s) for s in combinations(range(n), k))
    else:
        rng = np.random.default_rng(seed)
        subsets = (rng.choice(n, size=k, replace=False) for _ in range(draws))
    total, count = 0.0, 0
    for idx in subsets:
        votes = Counter(classes[i] for i in idx if classes[i] is not None)
        count += 1
        if votes:
            best = max(votes.values())
            tied = [c for c, v in votes.items() if v == best]
            total += sum(correct_of.get(c, False) for c in tied) / len(tied)
    return total / count


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
        current = signals.auroc_row, answers.maj_at_k
        signals.auroc_row, answers.maj_at_k = sklearn_auroc_row, counter_maj_at_k
        try:
            t0 = time.perf_counter()
            run_analyze(str(run), window=8)
            t_old = time.perf_counter() - t0
        finally:
            signals.auroc_row, answers.maj_at_k = current
    t = Table(title=f"analyze, tiny on ProsQA: {args.questions} questions x {args.samples} "
                    f"samples{' + latents' if args.capture else ''} (sampling took {t_sample:.1f} s)")
    for c in ("analyze", "seconds", "speed-up"):
        t.add_column(c)
    t.add_row("previous: scikit-learn per AUROC draw, Counter per maj@k subset",
              f"{t_old:.2f}", "1.00x")
    t.add_row("now: vectorised ranks (cluster bootstrap), vectorised maj@k", f"{t_new:.2f}",
              f"{t_old / t_new:.1f}x")
    con.print(t)


if __name__ == "__main__":
    main()
