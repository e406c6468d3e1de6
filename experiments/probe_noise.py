"""What the probe's scoring choices do on noise, measured (the figures the README quotes).

Three questions, each on R runs of synthetic noise where labels are tied to questions only
(a question's samples share a coin flip, 30% of them flipped), so a probe has nothing to find
and every AUROC should sit at 0.5:

1. pooling: the mean out-of-fold AUROC when the folds' raw probabilities are pooled, against
   pooling each fold's scores as within-fold quantiles (what ``cross_val_scores`` does);
2. intervals: how often a nominal 95% interval covers 0.5 when it comes from bootstrapping the
   out-of-fold scores alone (``bootstrap_auroc``), against refitting the whole grouped
   cross-validation on resampled questions (``refit_interval``);
3. choosing the layer: over L noise "layers", how often the best layer's own 95% interval
   excludes 0.5, against its interval at the Bonferroni level (``selected_level``), which is
   the row ``hidden, best layer`` of ``attractor probe``.

Usage: python experiments/probe_noise.py [--runs 40] [--layers 8] [--refits 15]
(about 3 minutes on 2 cores at the defaults).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import norm

from attractor.metrics.auroc import auroc, bootstrap_auroc
from attractor.probes.model import (cross_val_scores, group_folds, normal_interval, refit_se,
                                    selected_level)


def noise(seed: int, n_q: int = 80, per_q: int = 4, d: int = 8):
    """Features with a per-question offset and labels tied to questions only."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"q{i}" for i in range(n_q)], per_q)
    x = rng.normal(size=(n_q * per_q, d)) + np.repeat(rng.normal(size=(n_q, d)), per_q, 0)
    y = np.repeat(rng.random(n_q) < 0.5, per_q) ^ (rng.random(n_q * per_q) < 0.3)
    return x, y, groups, rng


def raw_pooled(x, y, groups, k: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities pooled as they are (the convention the probe does not use)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.full(len(y), np.nan)
    for test in group_folds(groups, k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        m = make_pipeline(StandardScaler(), PCA(n_components=min(32, x.shape[1]),
                                                random_state=seed),
                          LogisticRegression(max_iter=2000)).fit(x[train], y[train])
        out[test] = m.predict_proba(x[test])[:, 1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--refits", type=int, default=15)
    args = ap.parse_args()
    t0 = time.time()
    raw, quant, boot_cov, refit_cov, plain_out, corr_out = [], [], 0, 0, 0, 0
    z95 = float(norm.ppf(0.975))
    z_sel = float(norm.ppf(1 - (1 - selected_level(0.95, args.layers)) / 2))
    for r in range(args.runs):
        x, y, g, rng = noise(1000 + r)
        raw.append(auroc(raw_pooled(x, y, g, 5, r), y))
        s = cross_val_scores(x, y, g, 5, r)
        quant.append(auroc(s, y))
        lo, hi = bootstrap_auroc(s, y, g, reps=300, seed=r)
        boot_cov += lo <= 0.5 <= hi
        se = refit_se(x, y, g, args.refits, 5, r)
        lo, hi = normal_interval(quant[-1], se)
        refit_cov += lo <= 0.5 <= hi
        best = None
        for _ in range(args.layers):
            xl = rng.normal(size=x.shape) + np.repeat(rng.normal(size=(80, x.shape[1])), 4, 0)
            a = auroc(cross_val_scores(xl, y, g, 5, r), y)
            if best is None or a > best[0]:
                best = (a, xl)
        se = refit_se(best[1], y, g, args.refits, 5, r)
        plain_out += best[0] - z95 * se > 0.5
        corr_out += best[0] - z_sel * se > 0.5
    n = args.runs
    t = Table(title=f"Probe scoring on noise ({n} runs, {time.time() - t0:.0f} s)")
    for c in ("what", "convention", "result", "nominal"):
        t.add_column(c)
    t.add_row("mean AUROC", "raw probabilities pooled", f"{np.mean(raw):.3f}", "0.5")
    t.add_row("mean AUROC", "within-fold quantiles (used)", f"{np.mean(quant):.3f}", "0.5")
    t.add_row("95% interval covers 0.5", "bootstrap of out-of-fold scores",
              f"{boot_cov} of {n}", f"{0.95 * n:.0f} of {n}")
    t.add_row("95% interval covers 0.5", f"refit ({args.refits} resamples, used)",
              f"{refit_cov} of {n}", f"{0.95 * n:.0f} of {n}")
    t.add_row(f"best of {args.layers} layers: interval above 0.5", "its own 95% interval",
              f"{plain_out} of {n}", f"at most {0.05 * n:.0f} of {n}")
    t.add_row(f"best of {args.layers} layers: interval above 0.5",
              "Bonferroni level (used: 'hidden, best layer')", f"{corr_out} of {n}",
              f"at most {0.05 * n:.0f} of {n}")
    Console().print(t)


if __name__ == "__main__":
    main()
