"""``attractor early-stop RUN``: replay early-stopping rules on the stored traces and write
``metrics/early_stop.parquet`` (rule, setting, tokens_saved, accuracy_loss -- both as fractions
against full-budget majority voting over all samples -- plus accuracy and tokens)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.errors import UserError
from attractor.scaling.early_stop import (Trace, consensus_rule, deepconf_rule, latent_rule,
                                          majority_outcome)
from attractor.store.environment import now
from attractor.store.run_store import RunStore


def rule_grid(n: int, window: int, has_latents: bool) -> dict[tuple[str, str], object]:
    """The settings tried for each rule on questions with ``n`` samples."""
    grid: dict[tuple[str, str], object] = {}
    for warm in sorted({max(1, n // 8), max(1, n // 4), max(2, n // 2)}):
        for pct in (10, 50, 90):
            grid[("deepconf", f"warmup={warm},percentile={pct},window={window}")] = \
                deepconf_rule(warm, pct, window)
    for m in sorted({2, 3, max(2, n // 4)}):
        for share in (0.6, 0.75, 0.9, 1.0):
            grid[("consensus", f"min_traces={m},share={share}")] = consensus_rule(m, share)
    if has_latents:
        for m in sorted({2, 4}):
            for tight in (0.5, 0.7, 0.8, 0.9, 0.95):
                grid[("latent", f"min_traces={m},tightness={tight}")] = latent_rule(m, tight)
    return grid


def run_early_stop(run: str, window: int = 2048, layer: int | None = None,
                   position: str | None = None) -> pd.DataFrame:
    """Score every rule setting; returns the table (also written)."""
    store = RunStore(run)
    if not store.exists():
        raise UserError(f"{run}: not a run directory (no manifest.json)")
    roll = store.rollouts(["question_id", "sample_id", "answer_class", "correct", "n_tokens",
                           "token_confidences"])
    if roll.empty:
        raise UserError(f"{run}: the run has no rollouts")
    if roll["correct"].isna().any():
        raise UserError(f"{run}: ungraded rollouts; run 'attractor analyze {run}' first")
    latent = store.latent_store
    layer, position = latent.default_choice(layer, position)
    questions = []
    for qid, sub in roll.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        lat = latent.every_sample(qid, layer, position, len(sub))
        traces = [Trace(a if isinstance(a, str) else None, int(nt or 0),
                        np.asarray(c if c is not None else [], float),
                        None if lat is None else lat[i])
                  for i, (a, nt, c) in enumerate(zip(sub["answer_class"], sub["n_tokens"],
                                                     sub["token_confidences"]))]
        correct_of = {a: bool(ok) for a, ok in zip(sub["answer_class"], sub["correct"])
                      if isinstance(a, str)}
        questions.append((traces, correct_of))
    n = min(len(t) for t, _ in questions)
    ref = [majority_outcome(t, c) for t, c in questions]
    ref_tokens = sum(o.tokens for o in ref)
    ref_acc = float(np.mean([o.correct for o in ref]))
    rows = [{"rule": "majority", "setting": f"all {n} samples", "tokens": ref_tokens,
             "accuracy": ref_acc, "tokens_saved": 0.0, "accuracy_loss": 0.0}]
    has_latents = all(all(tr.latent is not None for tr in t) for t, _ in questions)
    for (rule, setting), fn in rule_grid(n, window, has_latents).items():
        outs = [fn(t, c) for t, c in questions]
        tokens = sum(o.tokens for o in outs)
        acc = float(np.mean([o.correct for o in outs]))
        rows.append({"rule": rule, "setting": setting, "tokens": tokens, "accuracy": acc,
                     "tokens_saved": 1 - tokens / ref_tokens if ref_tokens else 0.0,
                     "accuracy_loss": ref_acc - acc})
    table = pd.DataFrame(rows)
    store.write_metric_table("early_stop", table)
    store.update_stage("early_stop", status="done", finished=now(), window=window,
                       latent_layer=layer, latent_position=position)
    return table


def best_within(table: pd.DataFrame, max_loss: float = 0.01) -> pd.DataFrame:
    """Per rule, the setting that saves the most tokens losing at most ``max_loss`` accuracy."""
    ok = table[(table["accuracy_loss"] <= max_loss + 1e-12) & (table["rule"] != "majority")]
    if ok.empty:
        return ok
    return ok.sort_values("tokens_saved", ascending=False).groupby("rule", sort=False).head(1)
