"""``attractor attention RUN``: per-head attention features of every rollout
(``metrics/attention.parquet``), their AUROCs for sample correctness and question stability
(``attention_auroc.parquet``), greedy head ablation (``attention_ablation.parquet``) and a
summary naming the look-up head (``attention_summary.json``). The model is loaded with eager
attention for this command only (SDPA and flash attention return no weights)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from attractor.checks import check_positive
from attractor.capture.reforward import plan_batches
from attractor.grading.grade import grade_question
from attractor.mechanism.ablation import ablated_head, greedy_texts, parse_heads
from attractor.mechanism.attention import AttnItem, attention_batch, response_header_len
from attractor.mechanism.modules import decoder_modules
from attractor.mechanism.prosqa_steps import proof_steps, sentence_spans
from attractor.run_model import MechanismRun
from attractor.metrics.auroc import auroc, bootstrap_auroc
from attractor.ui import progress_bar

# scored so that "more focused / more grounded / on the gold sentence" predicts the positive
# class; fixed before looking at any run
DIRECTIONS = {"entropy": -1.0, "lookback": 1.0, "gold_mass": 1.0, "gold_top": 1.0}


def run_attention(run: str, *, ablate: str = "all", model: str | None = None,
                  max_tokens_per_batch: int = 4096, device: str = "auto", dtype: str = "auto",
                  show_progress: bool = True, log: Callable[[str], None] = print
                  ) -> dict[str, Any]:
    """Compute the attention tables of a run (resumable); returns counts and the summary."""
    check_positive(max_tokens_per_batch, "--max-tokens-per-batch")
    mr = MechanismRun(run, "attention", model=model, device=device, dtype=dtype,
                      attn_implementation="eager")
    mods = decoder_modules(mr.model)
    heads = parse_heads(ablate, mods.n_layers, mods.n_heads)
    tables = [mr.table("attention")] + ([mr.table("attention_ablation")] if heads else [])
    budget = int(mr.store.manifest.sampling.get("max_new_tokens") or 256)
    done = mr.begin({"attn_implementation": "eager", "ablate": ablate,
                     "ablation_max_new_tokens": budget}, tables)
    grader = mr.store.manifest.config.get("grader", "auto")
    from attractor.engines.hf import HFEngine

    engine = HFEngine(mr.model, mr.tokenizer)
    pad = mr.tokenizer.pad_token_id or 0
    todo = len(mr.labels) - len(done & set(mr.labels["question_id"]))
    counts = {"rollouts": 0, "steps": 0}
    with progress_bar(show_progress) as bar:
        task = bar.add_task("attention", total=todo)
        for chunk in mr.questions(done):
            rows = []
            for q in chunk:
                items = _items(mr, q)
                counts["rollouts"] += len(items)
                counts["steps"] += sum(len(it.steps) for it in items)
                for batch in plan_batches([len(it.ids) for it in items], max_tokens_per_batch):
                    feats = attention_batch(mods, [items[i] for i in batch], pad)
                    for i, f in zip(batch, feats):
                        rows.append(_feature_rows(q.rollouts[i], f, len(items[i].steps)))
            tables[0].append(pd.concat(rows, ignore_index=True))
            if heads:
                tables[1].append(_ablation_rows(mods, engine, chunk, heads, budget, grader))
            bar.update(task, advance=len(chunk))
    out = mr.finish(tables, attn_implementation="eager", **counts)
    au = head_aurocs(out["attention"], mr.labels)
    mr.store.write_metric_table("attention_auroc", au)
    summary = attention_summary(out["attention"], out.get("attention_ablation"), au)
    summary["counts"] = counts
    mr.store.write_metric_json("attention_summary", summary)
    return {"counts": counts, "summary": summary}


def _items(mr: MechanismRun, q) -> list[AttnItem]:
    tok = mr.tokenizer
    header = response_header_len(tok, bool((mr.store.manifest.config or {}).get(
        "chat_template", True)))
    items = []
    spans, pairs = [], []
    if q.problem.kind == "prosqa" and q.rollouts:
        spans, pairs = sentence_spans(tok, q.rollouts[0].prompt_ids)
    for r in q.rollouts:
        steps = proof_steps(tok, len(r.prompt_ids), r.completion_ids, r.text, pairs) \
            if pairs else []
        items.append(AttnItem(r.ids, len(r.prompt_ids), steps, spans,
                              min(header, len(r.prompt_ids) - 1)))
    return items


def _feature_rows(r, f: dict[str, np.ndarray], n_steps: int) -> pd.DataFrame:
    n_layers, n_heads = f["entropy"].shape
    df = pd.DataFrame({"question_id": r.question_id, "sample_id": np.int32(r.sample_id),
                       "correct": r.correct,
                       "layer": np.repeat(np.arange(n_layers), n_heads).astype(np.int16),
                       "head": np.tile(np.arange(n_heads), n_layers).astype(np.int16),
                       "n_steps": np.int32(n_steps)})
    for k in ("entropy", "lookback", "gold_mass", "gold_top"):
        df[k] = f[k].reshape(-1) if k in f else np.nan
    return df


def _ablation_rows(mods, engine, chunk, heads, budget: int, grader: str) -> pd.DataFrame:
    qids = [q.problem.id for q in chunk if q.rollouts]
    qs = [q for q in chunk if q.rollouts]
    prompts = [q.rollouts[0].prompt_ids for q in qs]
    rows = []

    def grade(texts):
        return [grade_question([t], q.problem.gold, q.problem.kind, grader, flexible=False)[0]
                for t, q in zip(texts, qs)]

    base = grade(greedy_texts(engine, qids, prompts, budget))
    for q, g in zip(qs, base):
        rows.append({"question_id": q.problem.id, "layer": -1, "head": -1,
                     "correct": g.correct, "answer": g.answer, "flipped": False})
    for layer, head in heads:
        with ablated_head(mods, layer, head):
            got = grade(greedy_texts(engine, qids, prompts, budget))
        for q, g, b in zip(qs, got, base):
            rows.append({"question_id": q.problem.id, "layer": layer, "head": head,
                         "correct": g.correct, "answer": g.answer,
                         "flipped": g.answer != b.answer})
    return pd.DataFrame(rows).astype({"layer": np.int16, "head": np.int16})


def head_aurocs(att: pd.DataFrame, labels: pd.DataFrame, reps: int = 500) -> pd.DataFrame:
    """AUROC of every (layer, head, feature) for sample correctness (cluster bootstrap over
    questions) and for question stability (the question's mean feature; ordinary bootstrap)."""
    rows = []
    lab = labels.set_index("question_id")["stable"]
    for (layer, head), sub in att.groupby(["layer", "head"]):
        for feat, sign in DIRECTIONS.items():
            s = sub.dropna(subset=[feat])
            if s.empty:
                continue
            score = sign * s[feat].to_numpy(float)
            y = s["correct"].astype(bool).to_numpy()
            lo, hi = bootstrap_auroc(score, y, s["question_id"].to_numpy(), reps=reps)
            rows.append({"layer": layer, "head": head, "feature": feat, "target": "correct",
                         "auroc": auroc(score, y), "ci_low": lo, "ci_high": hi,
                         "n_positive": int(y.sum()), "n_negative": int((~y).sum())})
            per_q = s.groupby("question_id")[feat].mean()
            ys = lab.reindex(per_q.index).astype(bool).to_numpy()
            qs = sign * per_q.to_numpy(float)
            lo, hi = bootstrap_auroc(qs, ys, reps=reps)
            rows.append({"layer": layer, "head": head, "feature": feat, "target": "stable",
                         "auroc": auroc(qs, ys), "ci_low": lo, "ci_high": hi,
                         "n_positive": int(ys.sum()), "n_negative": int((~ys).sum())})
    return pd.DataFrame(rows)


def attention_summary(att: pd.DataFrame, abl: pd.DataFrame | None, au: pd.DataFrame
                      ) -> dict[str, Any]:
    """The look-up head (most often attending the gold sentence on correct steps), its
    ablation against the other heads', and the strongest AUROCs."""
    out: dict[str, Any] = {}
    steps = att[att["n_steps"] > 0].dropna(subset=["gold_top"])
    per_head = pd.DataFrame()
    if not steps.empty:
        w = steps["n_steps"].astype(float)
        per_head = (steps.assign(wt=steps["gold_top"] * w, wm=steps["gold_mass"] * w, w=w)
                    .groupby(["layer", "head"])[["wt", "wm", "w"]].sum())
        per_head["gold_top_rate"] = per_head["wt"] / per_head["w"]
        per_head["gold_mass"] = per_head["wm"] / per_head["w"]
        best = per_head["gold_top_rate"].idxmax()
        out["lookup_head"] = {"layer": int(best[0]), "head": int(best[1]),
                              "gold_top_rate": float(per_head.loc[best, "gold_top_rate"]),
                              "gold_mass": float(per_head.loc[best, "gold_mass"]),
                              "n_steps": int(per_head.loc[best, "w"])}
        out["gold_top_rate_by_head"] = {f"{a}.{b}": float(v) for (a, b), v in
                                        per_head["gold_top_rate"].items()}
    if abl is not None and not abl.empty:
        acc = abl.groupby(["layer", "head"]).agg(accuracy=("correct", "mean"),
                                                 flip_rate=("flipped", "mean"))
        base = float(acc.loc[(-1, -1), "accuracy"]) if (-1, -1) in acc.index else None
        heads = acc.drop(index=(-1, -1), errors="ignore")
        out["ablation"] = {"baseline_accuracy": base,
                           "by_head": {f"{a}.{b}": {"accuracy": float(r.accuracy),
                                                    "flip_rate": float(r.flip_rate)}
                                       for (a, b), r in heads.iterrows()}}
        if "lookup_head" in out and not heads.empty:
            key = (out["lookup_head"]["layer"], out["lookup_head"]["head"])
            others = heads.drop(index=key, errors="ignore")
            if key in heads.index:
                out["lookup_head"]["ablated_accuracy"] = float(heads.loc[key, "accuracy"])
            out["other_heads_ablated_accuracy_median"] = (float(others["accuracy"].median())
                                                          if len(others) else None)
    if not au.empty:
        top = au.dropna(subset=["auroc"]).assign(dist=lambda d: (d["auroc"] - 0.5).abs())
        out["strongest_auroc"] = top.sort_values("dist", ascending=False).head(5).drop(
            columns="dist").to_dict("records")
    return out
