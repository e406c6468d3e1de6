"""Stable against unstable questions: group means and their difference with bootstrap intervals
over questions (each group resampled on its own), for the mechanism tables' summaries."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

GROUPS = {"stable": ("stable", "unstable"), "majority_correct": ("majority right",
                                                                 "majority wrong")}


def _boot(x: np.ndarray, rng, reps: int) -> np.ndarray:
    return x[rng.integers(0, len(x), size=(reps, len(x)))].mean(1)


def compare(values: pd.Series, labels: pd.Series, reps: int = 2000, seed: int = 0,
            level: float = 0.95) -> dict[str, Any]:
    """Mean of ``values`` (one per question) where ``labels`` is True and where it is False, the
    difference True - False, each with a percentile bootstrap interval over questions."""
    ok = values.notna()
    v, y = values[ok].to_numpy(float), labels[ok].to_numpy(bool)
    a, b = v[y], v[~y]
    rng = np.random.default_rng(seed)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    out: dict[str, Any] = {"n_true": int(len(a)), "n_false": int(len(b))}
    for name, x in (("true", a), ("false", b)):
        out[name] = float(x.mean()) if len(x) else None
        out[f"{name}_ci"] = (list(map(float, np.quantile(_boot(x, rng, reps), q)))
                             if len(x) >= 2 else None)
    if len(a) >= 2 and len(b) >= 2:
        d = _boot(a, rng, reps) - _boot(b, rng, reps)
        out["diff"] = float(a.mean() - b.mean())
        out["diff_ci"] = list(map(float, np.quantile(d, q)))
    else:
        out["diff"], out["diff_ci"] = None, None
    return out


def by_groups(per_question: pd.DataFrame, columns: list[str], labels: pd.DataFrame
              ) -> dict[str, dict[str, Any]]:
    """{group split: {column: comparison}} for per-question columns."""
    df = per_question.merge(labels, on="question_id", how="inner")
    return {split: {c: compare(df[c], df[split]) for c in columns} for split in GROUPS}
