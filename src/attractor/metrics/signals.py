"""``metrics/signals.parquet``: which signals predict correctness.

For every sample-level signal, the AUROC for sample correctness; for every signal averaged per
question (and for entropy, top-1 share and latent tightness), the AUROC for majority correctness.
Each AUROC is reported in the better direction (``direction`` = ``higher`` or ``lower`` means
correct) with a bootstrap 95% interval over the units (samples or questions).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.metrics.answers import auroc


def auroc_row(name: str, target: str, scores: np.ndarray, labels: np.ndarray, reps: int = 500,
              seed: int = 0) -> dict | None:
    """AUROC in the better direction with a percentile bootstrap interval (None if undefined)."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], labels[ok].astype(bool)
    a = auroc(s, y)
    if a is None:
        return None
    direction = "higher" if a >= 0.5 else "lower"
    sign = 1.0 if direction == "higher" else -1.0
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(s), len(s))
        b = auroc(sign * s[idx], y[idx])
        if b is not None:
            boots.append(b)
    lo, hi = (np.quantile(boots, [0.025, 0.975]) if boots else (np.nan, np.nan))
    return {"signal": name, "target": target, "auroc": max(a, 1 - a), "direction": direction,
            "ci_low": float(lo), "ci_high": float(hi), "n": int(len(s)),
            "n_positive": int(y.sum())}


def signal_table(samples: pd.DataFrame, questions: pd.DataFrame,
                 latent: pd.DataFrame | None) -> pd.DataFrame:
    """The AUROC table over every numeric signal."""
    rows = []
    skip = {"question_id", "sample_id", "correct", "majority_correct", "n_samples", "hops"}
    sig_cols = [c for c in samples.columns if c not in skip
                and pd.api.types.is_numeric_dtype(samples[c])]
    y = samples["correct"].astype(bool).to_numpy()
    for c in sig_cols:
        r = auroc_row(c, "sample_correct", samples[c].astype(float).to_numpy(), y)
        if r:
            rows.append(r)
    per_q = samples.groupby("question_id")[sig_cols].mean()
    q = questions.set_index("question_id")
    per_q = per_q.join(q[["answer_entropy_nats", "top1_share", "majority_correct"]], how="inner")
    if latent is not None and not latent.empty:
        single = latent[latent["occurrence"] == 0]
        wide = single.pivot_table(index="question_id", columns=["position", "layer"],
                                  values="tightness")
        wide.columns = [f"tightness[{p}@L{layer}]" for p, layer in wide.columns]
        per_q = per_q.join(wide, how="left")
    yq = per_q["majority_correct"].astype(bool).to_numpy()
    for c in per_q.columns:
        if c == "majority_correct":
            continue
        r = auroc_row(c, "majority_correct", per_q[c].astype(float).to_numpy(), yq)
        if r:
            rows.append(r)
    cols = ["signal", "target", "auroc", "direction", "ci_low", "ci_high", "n", "n_positive"]
    return pd.DataFrame(rows, columns=cols).sort_values(["target", "auroc"],
                                                        ascending=[True, False])
