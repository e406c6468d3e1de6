"""Per-question tables of a run's rollouts: one row of answer-stability metrics per question
(plain or weighted majority), and the view of the rollouts in an answer reading. Library code
shared by ``analyze``, the mechanism commands and probes."""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.metrics.answers import majority_class, question_metrics

def reading_view(df: pd.DataFrame, reading: str) -> pd.DataFrame:
    """``df`` with ``answer_class`` and ``correct`` taken from the chosen reading (the
    flexible columns replace them for ``flexible``)."""
    if reading == "strict":
        return df
    return df.assign(answer_class=df["answer_class_flexible"], correct=df["correct_flexible"])


def rollouts_in_reading(store, columns: list[str], reading: str | None = None) -> pd.DataFrame:
    """``columns`` of a run's rollouts with ``answer_class`` and ``correct`` in ``reading``
    (default: the reading its metrics were computed in, ``analyze --reading``, else the run's
    own ``--reading``), so every command reads answers the way the run's metrics do."""
    reading = reading or run_reading(store)
    if reading == "strict" or not {"answer_class", "correct"} & set(columns):
        return store.rollouts(columns)
    extra = [c for c in ("answer_class", "correct", "answer_class_flexible", "correct_flexible")
             if c not in columns]
    df = reading_view(store.rollouts(list(columns) + extra), reading)
    return df[list(columns)]


def run_reading(store) -> str:
    """The answer reading a run's metrics use: the one ``analyze`` recorded in
    ``summary.json``, else the run's ``--reading`` (strict for runs made before it existed)."""
    if store.sub("metrics", "summary.json").exists():
        used = (store.metric_json("summary").get("readings") or {}).get("used")
        if used:
            return used
    return (store.manifest.config or {}).get("reading", "strict")


def per_question(df: pd.DataFrame, weights: dict[tuple[str, int], float] | None = None
                 ) -> pd.DataFrame:
    """One row of metrics per question, in the run's question order. ``weights`` (per
    (question, sample)) replace plain majority voting by a weighted vote (an online DeepConf
    run: :func:`deepconf_weights`)."""
    rows = []
    for qid, sub in df.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        classes = [c if isinstance(c, str) else None for c in sub["answer_class"]]
        correct = [bool(x) for x in sub["correct"].fillna(False)]
        row = {"question_id": qid, **question_metrics(
            classes, correct, sub["finish_reason"].tolist(), sub["n_tokens"].tolist())}
        if weights is not None:
            w = np.array([weights.get((qid, int(i)), 0.0) for i in sub["sample_id"]])
            row["majority_answer"], row["majority_correct"] = weighted_majority(classes,
                                                                                 correct, w)
        rows.append(row)
    return pd.DataFrame(rows)


def weighted_majority(classes: list[str | None], correct: list[bool], w: np.ndarray
                      ) -> tuple[str | None, bool]:
    """The weighted vote's winner (:func:`attractor.metrics.answers.majority_class`: ties go
    to the class voted first, as the DeepConf reference's max over its insertion-ordered dict)
    and its correctness."""
    winner = majority_class(classes, w)
    if winner is None:
        return None, False
    return winner, bool(correct[classes.index(winner)])
