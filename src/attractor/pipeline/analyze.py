"""``attractor analyze RUN``: grade what is ungraded, then per-question answer-stability metrics
(``metrics/questions.parquet``) and a summary with bootstrap intervals, the stability gap and
AUROCs (``metrics/summary.json``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attractor.errors import UserError
from attractor.grading.grade import grade_question, grader_for
from attractor.grading.math_equiv import MathVerifier
from attractor.metrics.answers import auroc, bootstrap_ci, question_metrics
from attractor.store.environment import now
from attractor.store.run_store import RunStore, atomic_write_table

SUMMARY_METRICS = ("accuracy", "answer_entropy_nats", "answer_entropy_bits", "top1_share",
                   "n_unique_answers", "truncation_rate", "mean_tokens", "majority_correct")


def grade_ungraded(store: RunStore, problems_gold: dict[str, str], kind: str, grader: str) -> int:
    """Grade shards whose rows lack grades (imported rollouts); rewrites those shards
    atomically. Returns how many rollouts were graded."""
    graded = 0
    mode = grader_for(kind, grader)
    with MathVerifier(workers=2 if mode == "math" else 0) as verifier:
        for shard in store.rollout_shards():
            table = pq.read_table(shard)
            if table.num_rows == 0 or table.column("correct").null_count == 0:
                continue
            qids = table.column("question_id").to_pylist()
            texts = table.column("text").to_pylist()
            by_q: dict[str, list[int]] = {}
            for i, qid in enumerate(qids):
                by_q.setdefault(qid, []).append(i)
            cols: dict[str, list] = {c: [None] * len(qids) for c in
                                     ("answer", "answer_class", "correct", "extraction")}
            for qid, idx in by_q.items():
                if qid not in problems_gold:
                    raise UserError(f"{shard}: question_id {qid!r} has no gold answer in the "
                                    "run's questions.parquet")
                grades = grade_question([texts[i] or "" for i in idx], problems_gold[qid], kind,
                                        grader, verifier)
                for i, g in zip(idx, grades):
                    cols["answer"][i], cols["answer_class"][i] = g.answer, g.answer_class
                    cols["correct"][i], cols["extraction"][i] = g.correct, g.extraction
            for name, values in cols.items():
                pos = table.schema.get_field_index(name)
                table = table.set_column(pos, table.schema.field(name),
                                         pa.array(values, type=table.schema.field(name).type))
            atomic_write_table(shard, table)
            graded += len(qids)
    return graded


def per_question(df: pd.DataFrame) -> pd.DataFrame:
    """One row of metrics per question, in the run's question order."""
    rows = []
    for qid, sub in df.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        classes = [c if isinstance(c, str) else None for c in sub["answer_class"]]
        rows.append({"question_id": qid, **question_metrics(
            classes, [bool(x) for x in sub["correct"].fillna(False)],
            sub["finish_reason"].tolist(), sub["n_tokens"].tolist())})
    return pd.DataFrame(rows)


def summarise(q: pd.DataFrame) -> dict[str, Any]:
    """Means with bootstrap 95% intervals, the stability gap and AUROCs over questions."""
    cols = [c for c in q.columns if c in SUMMARY_METRICS or c.startswith(("pass@", "maj@"))]
    means = {}
    for c in cols:
        m, lo, hi = bootstrap_ci(q[c].astype(float).tolist())
        means[c] = {"mean": m, "ci_low": lo, "ci_high": hi}
    groups = {"majority_correct": q[q["majority_correct"]],
              "majority_wrong": q[~q["majority_correct"]]}
    gap = {name: {"n_questions": int(len(g)), **{c: (float(g[c].astype(float).mean())
                                                   if len(g) else None)
                                               for c in ("accuracy", "answer_entropy_nats",
                                                         "answer_entropy_bits", "top1_share",
                                                         "n_unique_answers", "truncation_rate",
                                                         "mean_tokens")}}
           for name, g in groups.items()}
    labels = q["majority_correct"].astype(bool).tolist()
    by_hops = {}
    if "hops" in q.columns and q["hops"].notna().any():
        for h, g in q[q["hops"].notna()].groupby("hops"):
            by_hops[str(int(h))] = {"n_questions": int(len(g)),
                                    "accuracy": float(g["accuracy"].mean()),
                                    "majority_accuracy": float(g["majority_correct"].mean())}
    return {
        "n_questions": int(len(q)),
        "n_samples": int(q["n_samples"].sum()),
        "means": means,
        "stability_gap": gap,
        "auroc_majority_correct": {
            "top1_share": auroc(q["top1_share"].tolist(), labels),
            "neg_answer_entropy": auroc((-q["answer_entropy_nats"]).tolist(), labels),
            "note": "higher top-1 share and lower entropy predicting a correct majority give "
                    "AUROC > 0.5; None when all majorities are right or all wrong",
        },
        "by_hops": by_hops,
    }


def latent_and_signal_tables(store: RunStore, q: pd.DataFrame, window: int) -> dict[str, Any]:
    """samples.parquet, latent.parquet (when latents exist) and signals.parquet."""
    from attractor.metrics.latent import latent_table
    from attractor.metrics.samples import latent_signals, make_logit_lens, trace_signals
    from attractor.metrics.signals import signal_table

    roll = store.rollouts(["question_id", "sample_id", "correct", "n_tokens", "token_logprobs",
                           "token_entropies", "token_confidences"])
    samples = trace_signals(roll, window=window)
    latent = None
    index = store.latent_store.index()
    if index.num_rows:
        correct_of = {(a, int(b)): bool(c) for a, b, c in
                      zip(samples["question_id"], samples["sample_id"], samples["correct"])}
        latent = latent_table(store.latent_store, correct_of)
        store.write_metric_table("latent", latent)
        cap = store.manifest.get("stages", {}).get("capture", {})
        lens = None
        kinds = {p.kind for p in store.questions()}
        if "answer" in cap.get("positions", []) and kinds & {"prosqa", "prontoqa"}:
            from attractor.models.load import load

            model, _ = load(cap["model"], device="cpu")
            lens = make_logit_lens(model)
        lat = latent_signals(store.latent_store, lens, kind=next(iter(kinds)))
        if not lat.empty:
            samples = samples.merge(lat, on=["question_id", "sample_id"], how="left")
    store.write_metric_table("samples", samples)
    signals = signal_table(samples, q, latent)
    store.write_metric_table("signals", signals)
    return {"signals": signals, "latent": latent}


def run_analyze(run: str, window: int = 2048) -> dict[str, Any]:
    """Analyse a run directory; returns the summary dict (also written to metrics/)."""
    store = RunStore(run)
    if not store.exists():
        raise UserError(f"{run}: not a run directory (no manifest.json)")
    m = store.manifest
    if not store.rollout_shards():
        raise UserError(f"{run}: the run has no rollouts yet")
    df = store.rollouts(["question_id", "correct"])
    if df["correct"].isna().any():
        problems = store.questions()
        gold = {p.id: p.gold for p in problems}
        kind = problems[0].kind if problems else "math"
        graded = grade_ungraded(store, gold, kind, m.get("config", {}).get("grader", "auto"))
        store.update_stage("grade", status="done", finished=now(), n_graded=graded)
    df = store.rollouts(["question_id", "sample_id", "answer_class", "correct", "finish_reason",
                         "n_tokens"])
    q = per_question(df)
    hops = {p.id: p.meta.get("hops") for p in store.questions()}
    q["hops"] = q["question_id"].map(hops).astype("Int64")
    store.write_metric_table("questions", q)
    summary = summarise(q)
    extra = latent_and_signal_tables(store, q, window)
    summary["signals"] = extra["signals"].head(40).to_dict("records")
    summary["has_latents"] = extra["latent"] is not None
    store.write_metric_json("summary", summary)
    store.update_stage("analyze", status="done", finished=now())
    return summary


def nan_to_none(x: float | None) -> float | None:
    """None for NaN (for printing)."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x
