"""``attractor analyze RUN``: grade what is ungraded, then per-question answer-stability metrics
(``metrics/questions.parquet``) and a summary with bootstrap intervals, the stability gap and
AUROCs (``metrics/summary.json``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attractor.checks import check_positive
from attractor.errors import UserError
from attractor.grading.grade import grade_question, grader_for
from attractor.grading.math_equiv import MathVerifier
from attractor.metrics.answers import auroc, bootstrap_ci
from attractor.metrics.questions import per_question, reading_view  # noqa: F401  (re-exported)
from attractor.store.environment import now
from attractor.store.run_store import RunStore, open_run

SUMMARY_METRICS = ("accuracy", "answer_entropy_nats", "answer_entropy_bits", "top1_share",
                   "n_unique_answers", "answered_share", "truncation_rate", "mean_tokens",
                   "majority_correct")


GRADE_COLUMNS = ("answer", "answer_class", "correct", "extraction", "answer_flexible",
                 "answer_class_flexible", "correct_flexible")


def grade_ungraded(store: RunStore, problems: dict[str, Any], kind: str, grader: str
                   ) -> tuple[int, dict[str, Any]]:
    """Grade shards whose rows lack grades (imported rollouts), in both readings; rewrites
    those shards atomically. ``problems``: id -> Problem. Returns how many rollouts were graded
    and the grader's failure counts."""
    from attractor.store.run_store import ROLLOUT_SCHEMA

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
            cols: dict[str, list] = {c: [None] * len(qids) for c in GRADE_COLUMNS}
            for qid, idx in by_q.items():
                if qid not in problems:
                    raise UserError(f"{shard}: question_id {qid!r} has no gold answer in the "
                                    "run's questions.parquet")
                p = problems[qid]
                grades = grade_question([texts[i] or "" for i in idx], p.gold, kind, grader,
                                        verifier, p.question)
                for i, g in zip(idx, grades):
                    for c in GRADE_COLUMNS:
                        cols[c][i] = getattr(g, c)
            for name, values in cols.items():
                field = ROLLOUT_SCHEMA.field(name)
                pos = table.schema.get_field_index(name)
                arr = pa.array(values, type=field.type)
                table = (table.set_column(pos, field, arr) if pos >= 0
                         else table.append_column(field, arr))
            store.write_rollout_table(shard, table)
            graded += len(qids)
        return graded, verifier.failure_record()




def reading_summary(store: RunStore) -> dict[str, Any]:
    """Accuracy and answered share of the run's rollouts in both readings (None for a reading
    the run was not graded in: runs graded before the flexible reading existed)."""
    roll = store.rollouts(["correct", "answer_class", "correct_flexible",
                           "answer_class_flexible"])
    out: dict[str, Any] = {}
    for reading, (c, a) in {"strict": ("correct", "answer_class"),
                            "flexible": ("correct_flexible", "answer_class_flexible")}.items():
        if roll.empty or roll[c].isna().all():
            out[reading] = None
            continue
        out[reading] = {"accuracy": float(roll[c].fillna(False).astype(bool).mean()),
                        "answered_share": float(roll[a].notna().mean())}
    return out


def grading_failure_note(m) -> tuple[int, str | None]:
    """Comparisons math-verify raised on while grading this run (sampling and later grading),
    and a note naming the count and the first, None when there were none."""
    recs = [m.stage(s) for s in ("sample", "grade")]
    errors = sum(int(r.get("grading_errors") or 0) for r in recs)
    timeouts = sum(int(r.get("grading_timeouts") or 0) for r in recs)
    if not errors and not timeouts:
        return 0, None
    first = next((r["grading_first_error"] for r in recs if r.get("grading_first_error")), None)
    return errors + timeouts, (
        f"grading: math-verify raised on {errors} and timed out on {timeouts} answer "
        "comparisons, each counted as not equal (the answer as wrong or as its own class)"
        + (f"; first: {first}" if first else ""))






def deepconf_weights(store: RunStore, rule: str) -> dict[tuple[str, int], float]:
    """DeepConf's vote weights for a run sampled with ``--early-stop deepconf:...``: the
    warm-up samples at or above the threshold and the samples not cut, weighted by their lowest
    group confidence (:mod:`attractor.scaling.deepconf`)."""
    from attractor.scaling import deepconf
    from attractor.scaling.online import parse_rule

    roll = store.rollouts(["question_id", "sample_id", "answer_class", "finish_reason",
                           "token_confidences"])
    params = parse_rule(rule, int(roll.groupby("question_id").size().max())).params
    out: dict[tuple[str, int], float] = {}
    for qid, sub in roll.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        confs = [np.asarray(c if c is not None else [], float) for c in sub["token_confidences"]]
        warm = params["warmup"]
        thr = deepconf.threshold(confs[:warm], params["percentile"], params["window"])
        w = deepconf.voting_weights(confs, [isinstance(a, str) for a in sub["answer_class"]],
                                    [f == "early_stop" for f in sub["finish_reason"]], warm, thr,
                                    params["window"])
        out.update({(qid, int(i)): float(x) for i, x in zip(sub["sample_id"], w)})
    return out


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


def latent_and_signal_tables(store: RunStore, q: pd.DataFrame, window: int, tail: int,
                             notes: list[str], show_progress: bool = False,
                             reading: str = "strict") -> dict[str, Any]:
    """samples.parquet, latent.parquet (when latents exist) and signals.parquet (sample
    correctness in ``reading``)."""
    from attractor.metrics.hidden import latent_table
    from attractor.metrics.samples import trace_signals
    from attractor.metrics.signals import n_signals, signal_table
    from attractor.ui import progress_bar

    roll = reading_view(store.rollouts(["question_id", "sample_id", "correct", "n_tokens",
                                        "token_logprobs", "token_entropies",
                                        "token_confidences", "answer_class_flexible",
                                        "correct_flexible"]), reading)
    roll = roll.drop(columns=["answer_class_flexible", "correct_flexible"]
                     + (["answer_class"] if "answer_class" in roll else []))
    samples = trace_signals(roll, window=window, tail=tail)
    latent = None
    index = store.hidden_store.index()
    if index.num_rows:
        covered = len(set(zip(index.column("question_id").to_pylist(),
                              index.column("sample_id").to_pylist())))
        if covered < len(roll):
            notes.append(f"latents cover {covered} of {len(roll)} rollouts (sampling resumed or "
                         f"a capture stopped after them): the latent metrics use those only; "
                         f"run the run's `attractor capture {store.path} ...` command again to "
                         "capture the rest")
        correct_of = {(a, int(b)): bool(c) for a, b, c in
                      zip(samples["question_id"], samples["sample_id"], samples["correct"])}
        latent = latent_table(store.hidden_store, correct_of)
        store.write_metric_table("latent", latent)
        lat = _latent_signals(store, notes)
        if not lat.empty:
            samples = samples.merge(lat, on=["question_id", "sample_id"], how="left")
    store.write_metric_table("samples", samples)
    with progress_bar(show_progress) as bar:
        task = bar.add_task("AUROCs", total=n_signals(samples, latent))
        signals = signal_table(samples, q, latent, progress=lambda: bar.update(task, advance=1))
    store.write_metric_table("signals", signals)
    return {"signals": signals, "latent": latent, "samples": samples}


def _latent_signals(store: RunStore, notes: list[str]) -> pd.DataFrame:
    """Trajectory and internal-consistency signals of the captured latents."""
    from attractor.capture.decisive import (LABEL_TASKS, answer_candidates,
                                            candidate_token_ids)
    from attractor.metrics.samples import latent_signals, make_logit_lens

    cap = store.manifest.stage("capture")
    problems = store.questions()
    lens, candidates, final = None, None, None
    if "decisive" in cap.get("positions", []) and any(p.kind in LABEL_TASKS for p in problems):
        from attractor.models.load import load

        model, tok = load(cap["model"], device="cpu")
        final = model.config.num_hidden_layers
        if final not in cap.get("layers", []):
            notes.append(f"consistency not computed: it compares every layer with the final one "
                         f"(layer {final}), which was not captured (--layers {cap.get('layers')})")
        else:
            lens = make_logit_lens(model)
            candidates = {}
            for p in problems:
                words = answer_candidates(p)
                ids = candidate_token_ids(tok, words) if words else None
                if ids is not None:
                    candidates[p.id] = ids
    elif "answer" in cap.get("positions", []) and any(p.kind in LABEL_TASKS for p in problems):
        notes.append("consistency not computed: it is read at the 'decisive' position (the "
                     "token before the answer label); capture with --positions ...,decisive")
    return latent_signals(store.hidden_store, lens, candidates, final)


def undefined_signal_notes(samples: pd.DataFrame, window: int) -> list[str]:
    """One line for each signal family that the run cannot define (instead of silent NaN)."""
    notes = []
    lengths = pd.to_numeric(samples["n_tokens"], errors="coerce").dropna()
    longest = int(lengths.max()) if len(lengths) else 0  # imported rollouts may lack lengths
    traj = [c for c in samples.columns if c.startswith("traj_") and "@" not in c]
    if traj and samples[traj].isna().all().all():
        notes.append("trajectory signals undefined: no completion spans two chunks; capture a "
                     f"smaller chunk:W (the completions have at most {longest} tokens)")
    has_conf = samples["conf_mean"].notna().any() if "conf_mean" in samples else False
    if has_conf and 0 < longest <= window:
        notes.append(f"--window {window} is at least as long as every trace (longest {longest} "
                     "tokens): each trace is one group, so conf_lowest_group and conf_bottom10 "
                     "equal conf_mean; pass a smaller --window")
    return notes


def _label_disagreements(store: RunStore) -> str | None:
    """For imported rollouts with the file's own correctness labels: where grading disagrees."""
    roll = store.rollouts(["question_id", "sample_id", "correct", "label_correct"])
    has = roll[roll["label_correct"].notna()]
    if has.empty:
        return None
    bad = has[has["label_correct"].astype(bool) != has["correct"].astype(bool)]
    if bad.empty:
        return f"grading agrees with the file's correctness labels on all {len(has)} rollouts"
    first = ", ".join(f"{a}/{b}" for a, b in zip(bad["question_id"][:5], bad["sample_id"][:5]))
    return (f"grading disagrees with the file's correctness labels on {len(bad)} of {len(has)} "
            f"rollouts (first: {first}); see rollouts' correct vs label_correct")


def run_analyze(run: str, window: int = 2048, tail: int = 2048, show_progress: bool = False,
                partial: bool = False, reading: str | None = None) -> dict[str, Any]:
    """Analyse a run directory; returns the summary dict (also written to metrics/). A run whose
    sampling has not finished is refused unless ``partial`` (then every output says so).
    ``reading``: the answer reading the metrics use (default: the run's ``reading``)."""
    from attractor.grading.grade import check_reading

    check_positive(window, "--window")
    check_positive(tail, "--tail")
    if reading is not None:
        check_reading(reading)
    try:
        store = open_run(run, partial=partial)
    except UserError as err:
        if "sampling has not finished" in str(err):
            raise UserError(f"{err}, or pass --partial to analyse what is there") from None
        raise
    m = store.manifest
    reading = reading or m.config.get("reading", "strict")
    unfinished = "sample" in m.stages and not m.stage_done("sample")
    df = store.rollouts(["question_id", "correct"])
    if df["correct"].isna().any():
        problems = store.questions()
        kind = problems[0].kind if problems else "math"
        graded, failures = grade_ungraded(store, {p.id: p for p in problems}, kind,
                                          m.config.get("grader", "auto"))
        store.update_stage("grade", status="done", finished=now(), n_graded=graded, **failures)
        m = store.manifest
    readings = reading_summary(store)
    if readings[reading] is None:
        raise UserError(f"{run}: the rollouts were graded before the {reading} reading existed; "
                        "analyse with --reading strict, or sample the run anew")
    df = reading_view(store.rollouts(["question_id", "sample_id", "answer_class", "correct",
                                       "finish_reason", "n_tokens", "answer_class_flexible",
                                       "correct_flexible"]), reading)
    labels = _label_disagreements(store)
    rule = m.config.get("early_stop") or ""
    weights = deepconf_weights(store, rule) if rule.startswith("deepconf") else None
    q = per_question(df, weights)
    hops = {p.id: p.meta.get("hops") for p in store.questions()}
    q["hops"] = q["question_id"].map(hops).astype("Int64")
    store.write_metric_table("questions", q)
    summary = summarise(q)
    summary["vote"] = ("deepconf: warm-up samples at or above the threshold and the samples not "
                       "cut, weighted by their lowest group confidence" if weights is not None
                       else "majority of the samples with an answer")
    summary["readings"] = {"used": reading, **readings}
    notes: list[str] = [labels] if labels else []
    summary["grading_failures"], failure_note = grading_failure_note(m)
    if failure_note:
        notes.append(failure_note)
    extra = latent_and_signal_tables(store, q, window, tail, notes, show_progress, reading)
    notes += undefined_signal_notes(extra["samples"], window)
    sig = extra["signals"]
    summary["signals"] = (pd.concat([g.head(20) for _, g in sig.groupby("target", sort=False)])
                          if len(sig) else sig).to_dict("records")
    summary["has_latents"] = extra["latent"] is not None
    if unfinished:
        have = int(q["question_id"].nunique())
        notes.insert(0, f"PARTIAL: sampling has not finished; {have} of "
                        f"{len(store.questions())} questions analysed")
    summary["partial"] = unfinished
    summary["notes"] = notes
    summary["computed_from"] = store.source_fingerprint()
    store.write_metric_json("summary", summary)
    store.update_stage("analyze", status="done", finished=now())
    return summary
