"""``metrics/signals.parquet``: which signals predict correctness.

For every sample-level signal, the AUROC for sample correctness, with a *cluster* bootstrap
interval over questions (a question's samples are correlated); for every signal averaged per
question (and for answer entropy, top-1 share and latent tightness), the AUROC for majority
correctness, with a bootstrap interval over questions. Each AUROC is in its signal's fixed
direction (:mod:`attractor.metrics.directions`): below 0.5 means the signal points the other way
on this run.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.metrics.auroc import auroc, bootstrap_auroc
from attractor.metrics.directions import direction_of

COLUMNS = ["signal", "family", "target", "auroc", "direction", "ci_low", "ci_high", "interval",
           "n", "n_positive", "n_negative", "n_clusters", "source"]
SAMPLE_INTERVAL = "cluster bootstrap over questions"
QUESTION_INTERVAL = "bootstrap over questions"


def auroc_row(name: str, target: str, scores: np.ndarray, labels: np.ndarray,
              clusters: np.ndarray | None = None, reps: int = 500, seed: int = 0) -> dict | None:
    """AUROC of ``name`` in its registered direction with a percentile bootstrap interval
    (clusters resampled when given); None when the signal is unregistered or undefined."""
    d = direction_of(name)
    if d is None:
        return None
    ok = ~np.isnan(scores)
    s = scores[ok] * (1.0 if d.higher_is_correct else -1.0)
    y = labels[ok].astype(bool)
    a = auroc(s, y)
    if a is None:
        return None
    cl = clusters[ok] if clusters is not None else None
    lo, hi = bootstrap_auroc(s, y, cl, reps=reps, seed=seed)
    return {"signal": name, "family": d.family, "target": target, "auroc": a,
            "direction": d.word, "ci_low": lo, "ci_high": hi,
            "interval": SAMPLE_INTERVAL if cl is not None else QUESTION_INTERVAL,
            "n": int(len(s)), "n_positive": int(y.sum()), "n_negative": int((~y).sum()),
            "n_clusters": int(len(np.unique(cl))) if cl is not None else int(len(s)),
            "source": d.source}


def signal_table(samples: pd.DataFrame, questions: pd.DataFrame,
                 latent: pd.DataFrame | None, reps: int = 500,
                 progress=None) -> pd.DataFrame:
    """The AUROC table over every registered signal. ``progress()`` is called once a signal."""
    rows = []
    sig_cols = [c for c in samples.columns if direction_of(c) is not None
                and pd.api.types.is_numeric_dtype(samples[c])]
    y = samples["correct"].astype(bool).to_numpy()
    qids = samples["question_id"].astype(str).to_numpy()
    for c in sig_cols:
        r = auroc_row(c, "sample_correct", samples[c].astype(float).to_numpy(), y, qids, reps)
        if r:
            rows.append(r)
        if progress:
            progress()
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
        r = auroc_row(c, "majority_correct", per_q[c].astype(float).to_numpy(), yq, None, reps)
        if r:
            rows.append(r)
        if progress:
            progress()
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["target", "auroc"],
                                                           ascending=[True, False])


def n_signals(samples: pd.DataFrame, latent: pd.DataFrame | None) -> int:
    """How many AUROCs :func:`signal_table` computes (for a progress bar)."""
    sig = [c for c in samples.columns if direction_of(c) is not None]
    extra = 2
    if latent is not None and not latent.empty:
        single = latent[latent["occurrence"] == 0]
        extra += single.groupby(["position", "layer"]).ngroups
    return 2 * len(sig) + extra
