"""``attractor early-stop RUN``: replay early-stopping rules on the stored traces and write
``metrics/early_stop.parquet`` (rule, setting, tokens_saved, accuracy_loss -- both as fractions
against full-budget majority voting over all samples -- plus accuracy and tokens).

Choosing each rule's best setting on the questions it is then scored on would flatter it, so
the reported result is *cross-fitted*: the questions are split into two seeded halves; the
setting that saves the most tokens within ``max_loss`` on one half is scored on the other, and
both held-out halves are added up. The table's ``row`` column says what each row is:
``reference`` (majority over all samples), ``grid`` (every setting on all questions: a
description, not a selection) and ``cross-fit`` (the reported result; ``selected_on`` names the
half each setting was chosen on and ``setting`` lists both choices).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attractor.engines.base import spent_tokens
from attractor.checks import check_positive
from attractor.errors import ConfigError, UserError
from attractor.metrics.questions import rollouts_in_reading
from attractor.scaling.early_stop import (Trace, consensus_rule, deepconf_rule, latent_rule,
                                          majority_outcome, probe_rule)
from attractor.store.environment import now
from attractor.store.run_store import open_run


PROBE_PERCENTILES = (5, 10, 20, 30, 40, 50)


def probe_thresholds(scores: dict) -> list[float]:
    """Thresholds for the probe rule: percentiles of the judged traces' scores (no labels are
    read, and a probe's scores sit near its training base rate, so a fixed grid of
    probabilities can miss them all), rounded to 3 decimals."""
    if not scores:
        return []
    v = np.asarray(list(scores.values()), float)
    return sorted({round(float(np.percentile(v, p)), 3) for p in PROBE_PERCENTILES})


def rule_grid(n: int, window: int, has_latents: bool, probe_n: int | None = None,
              thresholds: list[float] = ()) -> dict[tuple[str, str], object]:
    """The settings tried for each rule on questions with ``n`` samples (``probe_n`` and
    ``thresholds``: the probe's token count and cut points, when a probe is replayed)."""
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
    if probe_n is not None:
        for thr in thresholds:
            grid[("probe", f"threshold={thr}")] = probe_rule(thr, probe_n)
    return grid


def run_early_stop(run: str, window: int = 2048, layer: int | None = None,
                   position: str | None = None, max_loss: float = 0.01,
                   seed: int = 0, probe: str | None = None, device: str = "auto"
                   ) -> pd.DataFrame:
    """Score every rule setting and each rule's cross-fitted choice within ``max_loss``;
    returns the table (also written). ``probe``: a saved probe file, replayed at
    :func:`probe_thresholds` (needs the run's model)."""
    check_positive(window, "--window")
    if not 0 <= max_loss <= 1:
        raise ConfigError(f"--max-loss must be in [0, 1], got {max_loss}")
    store = open_run(run, graded=True)
    roll = rollouts_in_reading(store, ["question_id", "sample_id", "answer_class", "correct",
                                       "n_tokens", "token_confidences"])
    if roll.empty:
        raise UserError(f"{run}: the run has no rollouts")
    if roll["correct"].isna().any():
        raise UserError(f"{run}: ungraded rollouts; run 'attractor analyze {run}' first")
    latent = store.hidden_store
    layer, position = latent.default_choice(layer, position)
    scores, probe_n = (_probe_scores(run, probe, device) if probe else ({}, None))
    questions = []
    for qid, sub in roll.groupby("question_id", sort=False):
        sub = sub.sort_values("sample_id")
        lat = latent.every_sample(qid, layer, position, len(sub))
        traces = [Trace(a if isinstance(a, str) else None, spent_tokens(nt, c),
                        np.asarray(c if c is not None else [], float),
                        None if lat is None else lat[i],
                        scores.get((qid, int(sid))))
                  for i, (a, nt, c, sid) in enumerate(zip(
                      sub["answer_class"], sub["n_tokens"], sub["token_confidences"],
                      sub["sample_id"]))]
        correct_of = {a: bool(ok) for a, ok in zip(sub["answer_class"], sub["correct"])
                      if isinstance(a, str)}
        questions.append((traces, correct_of))
    n = min(len(t) for t, _ in questions)
    ref = [majority_outcome(t, c) for t, c in questions]
    ref_tokens = np.array([o.tokens for o in ref])
    ref_acc = np.array([o.correct for o in ref])
    has_latents = all(all(tr.latent is not None for tr in t) for t, _ in questions)
    grid = rule_grid(n, window, has_latents, probe_n, probe_thresholds(scores))
    per_q = {key: [fn(t, c) for t, c in questions] for key, fn in grid.items()}
    rows = [_row("reference", "majority", f"all {n} samples", ref_tokens.sum(), ref_acc.mean(),
                 ref_tokens.sum(), ref_acc.mean(), "")]
    for (rule, setting), outs in per_q.items():
        rows.append(_row("grid", rule, setting, sum(o.tokens for o in outs),
                         float(np.mean([o.correct for o in outs])), ref_tokens.sum(),
                         ref_acc.mean(), "none: all questions"))
    halves = _halves(len(questions), seed)
    for rule in dict.fromkeys(r for r, _ in grid):
        rows.append(_cross_fit(rule, per_q, ref_tokens, ref_acc, halves, max_loss))
    table = pd.DataFrame(rows)
    store.write_metric_table("early_stop", table)
    store.update_stage("early_stop", status="done", finished=now(), window=window,
                       latent_layer=layer, latent_position=position, max_loss=max_loss,
                       selection="cross-fit over two seeded halves of the questions", seed=seed,
                       probe=probe)
    return table


def _probe_scores(run: str, path: str, device: str) -> tuple[dict, int]:
    """Probe score of every judged rollout of ``run`` and the probe's N."""
    from attractor.run_model import MechanismRun
    from attractor.probes.online import load_for_model, trace_scores

    mr = MechanismRun(run, "early_stop_probe", device=device)
    p = load_for_model(path, mr.model, mr.sha, None, "--probe")
    qs = [q for chunk in mr.questions(set(), chunk=32) for q in chunk]
    return trace_scores(mr.model, mr.tokenizer, qs, p), int(p.meta["n_tokens"])


def _row(kind: str, rule: str, setting: str, tokens: float, acc: float, ref_tokens: float,
         ref_acc: float, selected_on: str) -> dict:
    return {"row": kind, "rule": rule, "setting": setting, "tokens": float(tokens),
            "accuracy": float(acc),
            "tokens_saved": float(1 - tokens / ref_tokens) if ref_tokens else 0.0,
            "accuracy_loss": float(ref_acc - acc), "selected_on": selected_on}


def _halves(n: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[: n // 2]), np.sort(perm[n // 2:])]


def _best_setting(rule: str, per_q: dict, ref_tokens: np.ndarray, ref_acc: np.ndarray,
                  idx: np.ndarray, max_loss: float) -> str | None:
    """The setting of ``rule`` that saves the most tokens on questions ``idx`` losing at most
    ``max_loss`` accuracy there (None if none qualifies)."""
    best, best_saved = None, -np.inf
    for (r, setting), outs in per_q.items():
        if r != rule or not len(idx):
            continue
        tokens = sum(outs[i].tokens for i in idx)
        acc = np.mean([outs[i].correct for i in idx])
        saved = 1 - tokens / ref_tokens[idx].sum() if ref_tokens[idx].sum() else 0.0
        if ref_acc[idx].mean() - acc <= max_loss + 1e-12 and saved > best_saved:
            best, best_saved = setting, saved
    return best


def _cross_fit(rule: str, per_q: dict, ref_tokens: np.ndarray, ref_acc: np.ndarray,
               halves: list[np.ndarray], max_loss: float) -> dict:
    """Choose on one half, score on the other, both ways; a half where no setting qualifies
    keeps full-budget majority voting (no early stop)."""
    tokens, correct, chosen = 0.0, 0.0, []
    for pick, score in ((halves[0], halves[1]), (halves[1], halves[0])):
        setting = _best_setting(rule, per_q, ref_tokens, ref_acc, pick, max_loss)
        chosen.append(setting or "none (full budget)")
        if setting is None:
            tokens += ref_tokens[score].sum()
            correct += ref_acc[score].sum()
        else:
            outs = per_q[(rule, setting)]
            tokens += sum(outs[i].tokens for i in score)
            correct += sum(outs[i].correct for i in score)
    n = sum(len(h) for h in halves)
    return _row("cross-fit", rule, f"half 1 -> {chosen[0]}; half 2 -> {chosen[1]}", tokens,
                correct / n, ref_tokens.sum(), ref_acc.mean(),
                "each half's setting chosen on the other half")


def reported(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a reader should quote: the reference and each rule's cross-fitted result."""
    return table[table["row"].isin(["reference", "cross-fit"])]
