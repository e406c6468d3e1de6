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
