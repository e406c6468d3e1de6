"""``attractor depth RUN``: depth use of every rollout (contributions, logit lens, commitment
layer, layer skipping) into ``metrics/depth.parquet``, ``depth_rollouts.parquet``,
``depth_skip.parquet`` and ``depth_summary.json``. See :mod:`attractor.mechanism.depth`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from attractor.checks import check_positive
from attractor.capture.positions import parse_positions, resolve
from attractor.capture.reforward import plan_batches
from attractor.errors import ConfigError
from attractor.mechanism.depth import SKIP_MODES, DepthItem, depth_batch, future_starts
from attractor.mechanism.modules import decoder_modules
from attractor.run_model import MechanismRun
from attractor.mechanism.summary import by_groups
from attractor.pipeline.capture import answer_token_index
from attractor.ui import progress_bar

BLOCK_COLS = ["attn_rel", "mlp_rel", "layer_rel", "attn_cos", "mlp_cos", "layer_cos"]
LENS_COLS = ["lens_kl", "lens_top5_overlap", "final_token_rank"]


def depth_items(mr: MechanismRun, question, specs, skip: str = "current"
                ) -> tuple[list[DepthItem], list, int]:
    """Items of one question's rollouts (with their skip windows for ``skip``); the rollouts
    kept and how many had no target."""
    tok = mr.tokenizer
    items, kept, missing = [], [], 0
    for r in question.rollouts:
        ans = answer_token_index(tok, r.completion_ids, r.text) if any(
            s.kind == "answer" for s in specs) else None
        dec = mr.decisive(question, r)
        targets = resolve(specs, len(r.prompt_ids), len(r.completion_ids), ans, dec)
        if not targets:
            missing += 1
            continue
        labels = [(t.position, t.occurrence) for t in targets]
        d = labels.index(("decisive", 0)) if ("decisive", 0) in labels else None
        starts = (future_starts(len(r.ids), f"{r.question_id}/{r.sample_id}")
                  if skip == "future" else [None])
        items.append(DepthItem(r.ids, [t.start for t in targets], labels, d, starts))
        kept.append(r)
    return items, kept, missing


def run_depth(run: str, *, positions: str = "decisive,frac:0.25,frac:0.5,frac:0.75",
              skip: str = "current", model: str | None = None, max_tokens_per_batch: int = 8192,
              device: str = "auto", dtype: str = "auto", show_progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Compute the depth tables of a run (resumable); returns counts and the summary.
    ``skip``: ``current`` or ``future`` (the reference's two layer-skipping variants) or
    ``off``."""
    if skip not in SKIP_MODES:
        raise ConfigError(f"--skip must be one of {', '.join(SKIP_MODES)}, got {skip!r}")
    specs = parse_positions(positions)
    if any(s.kind == "chunk" for s in specs):
        raise ConfigError("--positions: depth reads single tokens; chunk:W is a mean over "
                          "tokens")
    if not any(s.kind == "decisive" for s in specs):
        specs = parse_positions("decisive," + positions)
    check_positive(max_tokens_per_batch, "--max-tokens-per-batch")
    mr = MechanismRun(run, "depth", model=model, device=device, dtype=dtype)
    mods = decoder_modules(mr.model)
    tables = [mr.table("depth"), mr.table("depth_rollouts")] + (
        [mr.table("depth_skip")] if skip != "off" else [])
    done = mr.begin({"positions": [s.text for s in specs], "skip": skip}, tables)
    pad = mr.tokenizer.pad_token_id or 0
    n_layers = mods.n_layers
    todo = len(mr.labels) - len(done & set(mr.labels["question_id"]))
    counts = {"rollouts": 0, "no_target": 0, "no_decisive": 0}
    with progress_bar(show_progress) as bar:
        task = bar.add_task("depth", total=todo)
        for chunk in mr.questions(done):
            frames: dict[str, list[pd.DataFrame]] = {t.name: [] for t in tables}
            for q in chunk:
                items, kept, missing = depth_items(mr, q, specs, skip)
                counts["no_target"] += missing
                counts["rollouts"] += len(kept)
                counts["no_decisive"] += sum(it.decisive is None for it in items)
                for batch in plan_batches([len(it.ids) for it in items], max_tokens_per_batch):
                    its = [items[i] for i in batch]
                    rs = [kept[i] for i in batch]
                    cols, commit, skips = depth_batch(mods, its, pad, skip != "off",
                                                      max_tokens_per_batch)
                    frames["depth"].append(_depth_rows(its, rs, cols, n_layers))
                    frames["depth_rollouts"].append(pd.DataFrame({
                        "question_id": [r.question_id for r in rs],
                        "sample_id": [r.sample_id for r in rs],
                        "correct": [r.correct for r in rs],
                        "decisive_index": [it.positions[it.decisive] if it.decisive is not None
                                           else None for it in its],
                        "commitment_layer": commit}))
                    if skip != "off" and skips:
                        sk = pd.DataFrame(skips)
                        sk.insert(0, "sample_id", [rs[i].sample_id for i in sk.pop("item")])
                        sk.insert(0, "question_id", q.problem.id)
                        frames["depth_skip"].append(sk)
                if not items:  # a question without targets still counts as done
                    frames["depth_rollouts"].append(pd.DataFrame({
                        "question_id": [q.problem.id], "sample_id": [-1], "correct": [None],
                        "decisive_index": [None], "commitment_layer": [None]}))
            for t in tables:
                if frames[t.name]:
                    t.append(pd.concat(frames[t.name], ignore_index=True))
            bar.update(task, advance=len(chunk))
    out = mr.finish(tables, n_layers=n_layers)
    roll = out["depth_rollouts"]
    roll = roll[roll["sample_id"] >= 0]
    counts = {"rollouts": int(len(roll)), "no_decisive": int(roll["commitment_layer"].isna().sum()),
              "new_rollouts": counts["rollouts"], "no_target_new": counts["no_target"]}
    mr.store.update_stage("depth", **counts)
    summary = depth_summary(out, mr.labels, n_layers)
    summary["counts"] = counts
    mr.store.write_metric_json("depth_summary", summary)
    return {"counts": counts, "summary": summary, "n_layers": n_layers}


def _depth_rows(items: list[DepthItem], rolls, cols: dict[str, np.ndarray], n_layers: int
                ) -> pd.DataFrame:
    n = sum(len(it.positions) for it in items)
    qid = [r.question_id for r, it in zip(rolls, items) for _ in it.positions]
    sid = [r.sample_id for r, it in zip(rolls, items) for _ in it.positions]
    lab = [lb for it in items for lb in it.labels]
    tix = [p for it in items for p in it.positions]
    L1 = n_layers + 1
    df = pd.DataFrame({
        "question_id": np.repeat(qid, L1), "sample_id": np.repeat(sid, L1).astype(np.int32),
        "position": np.repeat([lb[0] for lb in lab], L1),
        "occurrence": np.repeat([lb[1] for lb in lab], L1).astype(np.int32),
        "token_index": np.repeat(tix, L1).astype(np.int32),
        "layer": np.tile(np.arange(L1), n).astype(np.int16)})
    for c in BLOCK_COLS:
        full = np.full((L1, n), np.nan, dtype=np.float32)
        full[:n_layers] = cols[c]
        df[c] = full.T.reshape(-1)
    for c in LENS_COLS:
        df[c] = cols[c].T.reshape(-1)
    df["final_token_rank"] = df["final_token_rank"].astype(np.int32)
    return df


def depth_summary(out: dict[str, pd.DataFrame], labels: pd.DataFrame, n_layers: int
                  ) -> dict[str, Any]:
    """Per-question means at the decisive position compared across stable/unstable and right/
    wrong-majority questions, with bootstrap intervals over questions."""
    depth, roll = out["depth"], out["depth_rollouts"]
    roll = roll[roll["sample_id"] >= 0]
    per_q = roll.groupby("question_id", as_index=False)["commitment_layer"].mean()
    summary: dict[str, Any] = {
        "commitment_layer": by_groups(per_q, ["commitment_layer"], labels),
        "n_layers": n_layers,
        "note": "per-question means over rollouts at the decisive position; 'diff' is "
                "true - false with a 95% bootstrap interval over questions"}
    dec = depth[depth["position"] == "decisive"]
    per_layer: dict[str, Any] = {}
    for col in ("layer_rel", "lens_kl"):
        wide = dec.groupby(["question_id", "layer"])[col].mean().unstack("layer")
        per_layer[col] = {int(layer): by_groups(
            wide[[layer]].rename(columns={layer: col}).reset_index(), [col], labels)
            for layer in wide.columns if wide[layer].notna().any()}
    summary["by_layer"] = per_layer
    if "depth_skip" in out and not out["depth_skip"].empty:
        sk = out["depth_skip"]
        flips = {}
        for s, sub in sk.groupby("skipped_layer"):
            f = sub.dropna(subset=["decisive_flip"]).astype({"decisive_flip": float})
            per = f.groupby("question_id", as_index=False)["decisive_flip"].mean()
            flips[int(s)] = by_groups(per, ["decisive_flip"], labels)
        summary["skip_flip_rate"] = flips
        summary["skip_overall"] = {int(s): {"later_change": float(sub["later_change"].mean()),
                                            "out_change": float(sub["out_change"].mean()),
                                            "flip_rate": float(sub["decisive_flip"].dropna()
                                                               .astype(float).mean())}
                                   for s, sub in sk.groupby("skipped_layer")}
    return summary
