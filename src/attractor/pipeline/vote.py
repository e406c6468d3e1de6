"""``attractor vote RUN``: majority against confidence-, trajectory-, consistency- and
tightness-weighted votes at k = 1, 2, 4, ... N, resampling k-subsets of each question's samples.
Writes ``metrics/vote.parquet`` (method, k, accuracy, ci_low, ci_high, tokens, majority,
delta_vs_majority, n_questions): ``accuracy``, ``majority`` and ``tokens`` are means over the
same ``n_questions`` questions, those where the method is defined."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from attractor.checks import MAX_DRAWS, check_count
from attractor.ui import progress_bar
from attractor.errors import ConfigError, UserError
from attractor.metrics.answers import bootstrap_ci, k_values
from attractor.metrics.questions import rollouts_in_reading
from attractor.scaling.vote import VoteQuestion, evaluate, signal_weigher, tightness_weigher
from attractor.store.environment import now
from attractor.store.run_store import open_run

CONFIDENCES = ("conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail")


def methods_for(samples: pd.DataFrame, etas: list[float], has_cosine: bool) -> dict[str, Any]:
    """Every method the run's signals allow."""
    methods: dict[str, Any] = {"majority": None}
    for c in CONFIDENCES:
        if c in samples and samples[c].notna().any():
            methods[f"deepconf:{c}"] = signal_weigher(c)
            for eta in etas:
                methods[f"deepconf:{c}@top{eta:g}%"] = signal_weigher(c, eta=eta)
    # stability priors, fixed in advance (not fitted on this run): a straighter, shorter latent
    # path and more layers agreeing with the final answer mean a more stable trace
    if "traj_cumulative_change" in samples and samples["traj_cumulative_change"].notna().any():
        methods["trajectory:cumulative_change"] = signal_weigher("traj_cumulative_change",
                                                                 higher_is_better=False)
    if "consistency_frac" in samples and samples["consistency_frac"].notna().any():
        methods["consistency"] = signal_weigher("consistency_frac")
    if has_cosine:
        methods["tightness"] = tightness_weigher
    return methods


def run_vote(run: str, draws: int = 300, etas: tuple[float, ...] = (10.0, 90.0),
             layer: int | None = None, position: str | None = None, seed: int = 0,
             show_progress: bool = False) -> pd.DataFrame:
    """Compute and store the voting table; returns it."""
    check_count(draws, "--draws", 1, MAX_DRAWS)
    if not etas or any(not 0 < e <= 100 for e in etas):
        raise ConfigError(f"--eta: each value must be in (0, 100], got {list(etas)}")
    store = open_run(run)
    if not store.sub("metrics", "samples.parquet").exists():
        raise UserError(f"{run}: no metrics/samples.parquet; run 'attractor analyze {run}' first")
    store.check_metrics_fresh()
    samples = store.metric_table("samples")
    roll = rollouts_in_reading(store, ["question_id", "sample_id", "answer_class", "correct",
                                       "n_tokens"])
    df = roll.merge(samples.drop(columns=["correct", "n_tokens"], errors="ignore"),
                    on=["question_id", "sample_id"], how="left")
    latent = store.hidden_store
    layer, position = latent.default_choice(layer, position)
    questions = []
    sig_cols = [c for c in df.columns if c not in ("question_id", "sample_id", "answer_class",
                                                   "correct", "n_tokens")]
    for qid, sub in df.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        classes = [c if isinstance(c, str) else None for c in sub["answer_class"]]
        correct_of = {c: bool(ok) for c, ok in zip(classes, sub["correct"]) if c is not None}
        cosine = None
        x = latent.every_sample(qid, layer, position, len(sub))
        if x is not None:
            xn = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
            cosine = xn @ xn.T
        questions.append(VoteQuestion(
            classes=classes, correct_of=correct_of,
            tokens=sub["n_tokens"].fillna(0).to_numpy(float),
            signals={c: pd.to_numeric(sub[c], errors="coerce").to_numpy(float)
                     for c in sig_cols}, cosine=cosine))
    if not questions:
        raise UserError(f"{run}: no rollouts to vote on")
    n = min(len(q.classes) for q in questions)
    ks = k_values(n)
    methods = methods_for(df, list(etas), any(q.cosine is not None for q in questions))
    with progress_bar(show_progress) as bar:
        job = bar.add_task(f"vote: {draws} draws per question and k", total=len(questions))
        res = evaluate(questions, methods, ks, draws=draws, seed=seed,
                       on_question=lambda: bar.update(job, advance=1))
    rows = []
    for k in ks:
        maj = res[("majority", k)]
        for m in methods:
            per_q = res[(m, k)]
            if np.isnan(per_q).all():
                continue
            # the method and majority are compared on the same questions: those where the
            # method is defined (a signal may be missing for some questions)
            defined = ~np.isnan(per_q) & ~np.isnan(maj)
            mean, lo, hi = bootstrap_ci(per_q[defined].tolist())
            rows.append({"method": m, "k": k, "accuracy": mean, "ci_low": lo, "ci_high": hi,
                         "tokens": float(np.mean(res[("__tokens__", k)][defined])),
                         "majority": float(np.mean(maj[defined])),
                         "delta_vs_majority": float(np.mean(per_q[defined] - maj[defined])),
                         "n_questions": int(defined.sum())})
    table = pd.DataFrame(rows)
    store.write_metric_table("vote", table)
    store.update_stage("vote", status="done", finished=now(), draws=draws,
                       latent_layer=layer, latent_position=position)
    return table
