"""The prompt and steering axes of a sweep report: per prompt template and per steering
strength, accuracy, answer entropy, top-1 share, maj@k, chain length and latent tightness, each
a mean over questions with a percentile-bootstrap interval; steered maj@k is compared with the
unsteered (alpha 0) maj@k at equal k, paired by question."""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.metrics.answers import bootstrap_ci

METRICS = (("accuracy", "accuracy"), ("answer_entropy_nats", "answer entropy (nats)"),
           ("top1_share", "top-1 share"), ("mean_tokens", "CoT length (tokens)"),
           ("tightness", "latent tightness"))


def maj_column(df: pd.DataFrame) -> str | None:
    """The maj@k column with the largest k."""
    ks = [int(c.split("@")[1]) for c in df.columns if c.startswith("maj@")
          and df[c].notna().any()]
    return f"maj@{max(ks)}" if ks else None


def axis_table(df: pd.DataFrame, axis: str) -> pd.DataFrame:
    """One row per value of ``axis`` (at the base temperature and budget): each metric's mean
    and 95% interval over questions; for ``alpha``, also maj@k minus the alpha-0 maj@k."""
    maj = maj_column(df)
    metrics = [m for m in METRICS if m[0] in df.columns and df[m[0]].notna().any()]
    if maj:
        metrics.append((maj, maj))
    base = None
    if axis == "alpha" and maj and (df["alpha"] == 0).any():
        base = df[df["alpha"] == 0].set_index("question_id")[maj]
    rows = []
    for value, g in df.groupby(axis, sort=False):
        row: dict = {axis: value, "questions": int(g["question_id"].nunique())}
        for col, _ in metrics:
            m, lo, hi = bootstrap_ci(g[col].to_numpy(float))
            row[col] = m
            row[f"{col} 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
        if base is not None:
            d = g.set_index("question_id")[maj] - base.reindex(g["question_id"]).to_numpy()
            m, lo, hi = bootstrap_ci(d.to_numpy(float))
            row[f"{maj} - unsteered"] = m
            row[f"{maj} - unsteered 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def axis_figure(table: pd.DataFrame, axis: str):
    """Each metric against the axis, with its interval."""
    import matplotlib.pyplot as plt

    cols = [c for c, _ in METRICS if c in table.columns]
    maj = [c for c in table.columns if c.startswith("maj@") and "unsteered" not in c
           and "CI" not in c]
    cols += maj
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2))
    axes = np.atleast_1d(axes)
    x = np.arange(len(table)) if axis == "prompt" else table[axis].to_numpy(float)
    for ax, col in zip(axes, cols):
        ci = table[f"{col} 95% CI"].str.strip("[]").str.split(", ", expand=True).astype(float)
        y = table[col].to_numpy(float)
        # a percentile interval need not straddle the mean by much; NaN (one question): no bar
        err = np.nan_to_num(np.clip([y - ci[0].to_numpy(), ci[1].to_numpy() - y], 0, None))
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
        ax.set_title(dict(METRICS).get(col, col), fontsize=9)
        if axis == "prompt":
            ax.set_xticks(x, table["prompt"], rotation=30, fontsize=8)
        else:
            ax.set_xlabel("alpha")
    fig.tight_layout()
    return fig
