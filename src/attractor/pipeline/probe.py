"""``attractor probe RUN``: early-token probes of sample correctness, majority correctness and
question stability, per layer and number of completion tokens read, with baselines, into
``metrics/probes.parquet``; the best probe per target and N is saved under ``probes/``.

References: Zhang et al. 2025, "Reasoning models know when they are right"
(AngelaZZZ-611/reasoning_models_probing: a probe on hidden states predicts correctness, AUROC
about 0.88 on MATH); Afzal et al. 2025 (anum94/CoTpred: success is predictable before the first
reasoning token, our N = 0).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from attractor.capture.positions import parse_layers
from attractor.checks import check_positive
from attractor.errors import ConfigError, UserError
from attractor.run_model import MechanismRun
from attractor.metrics.auroc import auroc
from attractor.metrics.questions import rollouts_in_reading
from attractor.probes.features import FeatureSet, collect
from attractor.probes.model import (Probe, cross_val_scores, normal_interval, permute_by_question,
                                    refit_se, selected_level)
from attractor.store.environment import now
from attractor.store.run_store import open_run
from attractor.ui import progress_bar

TARGETS = ("correct", "majority_correct", "stable")
BASELINES = ("question_length", "hops", "confidence", "entropy")


def parse_tokens(spec: str) -> list[int]:
    """``--tokens 0,1,2,4,8,16``."""
    try:
        ns = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--tokens: '{spec}' is not a list of integers") from None
    if not ns or ns[0] < 0:
        raise ConfigError(f"--tokens: need non-negative token counts, got '{spec}'")
    return ns


def run_probe(run: str, *, layers: str = "all", tokens: str = "0,1,2,4,8,16", folds: int = 5,
              seed: int = 0, refits: int = 20, model: str | None = None, max_tokens_per_batch: int = 16384,
              device: str = "auto", dtype: str = "auto", show_progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit and score the probes; returns the table and counts."""
    ns = parse_tokens(tokens)
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if refits < 2:
        raise ConfigError(f"--refits must be at least 2, got {refits}")
    check_positive(max_tokens_per_batch, "--max-tokens-per-batch")
    store = open_run(run, graded=True)
    n_questions = len(store.questions())
    if folds > n_questions:
        raise ConfigError(f"--folds {folds}: more folds than the run's {n_questions} questions "
                          "(each fold holds out whole questions)")
    correct = rollouts_in_reading(store, ["question_id", "sample_id", "correct"])
    if correct["correct"].astype(bool).nunique() < 2:
        which = "right" if correct["correct"].all() else "wrong"
        raise UserError(f"{run}: every rollout is {which}; a probe needs right and wrong "
                        "rollouts to tell apart")
    mr = MechanismRun(run, "probe", model=model, device=device, dtype=dtype)
    layer_list = parse_layers(layers, mr.model.config.num_hidden_layers)
    fs = FeatureSet()
    with progress_bar(show_progress) as bar:
        task = bar.add_task("probe features", total=len(mr.labels))
        for chunk in mr.questions(set(), chunk=16,
                                  extra=("token_confidences", "token_entropies")):
            collect(mr.model, mr.tokenizer, chunk, layer_list, ns, fs, max_tokens_per_batch)
            bar.update(task, advance=len(chunk))
    if not fs.n_tokens:
        raise ConfigError(f"{run}: no rollout has the requested prefixes (--tokens {tokens})")
    rows = pd.DataFrame({"question_id": fs.question_id, "sample_id": fs.sample_id,
                         "n_tokens": fs.n_tokens, **fs.baselines})
    rows = rows.merge(correct, on=["question_id", "sample_id"], how="left").merge(
        mr.labels[["question_id", "majority_correct", "stable"]], on="question_id", how="left")
    hidden = {layer: np.concatenate(v) for layer, v in fs.hidden.items()}
    table, best = [], {}
    probes_dir = mr.store.sub("probes")
    with progress_bar(show_progress) as fits:
        fit_task = fits.add_task("probe fits", total=len(TARGETS) * len(ns) * (len(layer_list) + 2
                                                                               + len(BASELINES)))
        for target in TARGETS:
            y_all = rows[target].fillna(False).astype(bool).to_numpy()
            for n in ns:
                sel = np.flatnonzero(rows["n_tokens"].to_numpy() == n)
                y, groups = y_all[sel], rows["question_id"].to_numpy()[sel]
                if len(sel) < 10 or y.all() or not y.any():
                    fits.update(fit_task, advance=len(layer_list) + 2 + len(BASELINES))
                    continue
                base = {"target": target, "n_tokens": n, "n": int(len(sel)),
                        "n_positive": int(y.sum()), "n_negative": int((~y).sum()),
                        "n_questions": int(len(np.unique(groups)))}
                ses = {}
                for layer in layer_list:
                    x = hidden[layer][sel]
                    s = cross_val_scores(x, y, groups, folds, seed)
                    table.append({**base, **_score("hidden", layer, s, y, groups, x, folds, seed,
                                                   refits)})
                    ses[layer] = table[-1].pop("se")
                    fits.update(fit_task, advance=1, description=f"probe fits: {target}, "
                                                                  f"{n} tokens, layer {layer}")
                    if table[-1]["auroc"] is not None and (
                            (target, n) not in best or table[-1]["auroc"] > best[(target, n)][0]):
                        best[(target, n)] = (table[-1]["auroc"], layer)
                if (target, n) in best:
                    # the best layer is chosen on the scores that report it: its interval holds
                    # at 95% whichever layer wins only at the Bonferroni level over all layers
                    a, top = best[(target, n)]
                    lo, hi = normal_interval(a, ses[top], selected_level(0.95, len(layer_list)))
                    table.append({**base, "feature": "hidden, best layer", "layer": top,
                                  "auroc": a, "ci_low": lo, "ci_high": hi})
                rng = np.random.default_rng(seed)
                top = best.get((target, n), (None, layer_list[-1]))[1]
                shuffled = permute_by_question(y, groups, rng)
                s = cross_val_scores(hidden[top][sel], shuffled, groups, folds, seed)
                table.append({**base, **_score("shuffled labels", top, s, shuffled, groups,
                                               hidden[top][sel], folds, seed, refits)})
                table[-1].pop("se")
                fits.update(fit_task, advance=2)
                for b in BASELINES:
                    fits.update(fit_task, advance=1)
                    xb = rows[b].to_numpy(float)[sel]
                    ok = ~np.isnan(xb)
                    if ok.sum() < 10 or len(np.unique(xb[ok])) < 2:
                        continue
                    s = np.full(len(sel), np.nan)
                    s[ok] = cross_val_scores(xb[ok, None], y[ok], groups[ok], folds, seed)
                    table.append({**base, **_score(b, None, s, y, groups, xb[:, None], folds, seed,
                                                   refits)})
                    table[-1].pop("se")
    if not table:
        raise UserError(f"{run}: no probe could be fitted: at every prefix length each target "
                        "is one-class or has fewer than 10 rollouts")
    for (target, n), (_, layer) in best.items():
        sel = rows["n_tokens"].to_numpy() == n
        y = rows[target].fillna(False).astype(bool).to_numpy()[sel]
        meta = {"model": mr.spec, "weights_sha256": mr.sha, "layer": layer, "n_tokens": n,
                "target": target, "hidden_size": int(hidden[layer].shape[1]),
                "num_hidden_layers": int(mr.model.config.num_hidden_layers),
                "run": str(mr.store.path), "created": now()}
        Probe.fit(hidden[layer][sel], y, meta, seed).save(
            probes_dir / f"{target}_n{n}.safetensors")
    df = pd.DataFrame(table)
    mr.store.write_metric_table("probes", df)
    counts = {"rows": len(rows), "skipped_short": fs.skipped_short,
              "skipped_answered": fs.skipped_answered}
    mr.store.update_stage("probe", status="done", finished=now(), layers=layer_list,
                          tokens=ns, folds=folds, seed=seed, model=mr.spec, refits=refits,
                          interval_precision=(f"the intervals' half-widths are known to about "
                                              f"+-{100 / np.sqrt(2 * (refits - 1)):.0f}% "
                                              f"({refits} refits)"),
                          weights_sha256=mr.sha, **counts)
    return {"table": df, "counts": counts, "best": best}



def _score(feature: str, layer: int | None, s: np.ndarray, y: np.ndarray, groups: np.ndarray,
           x: np.ndarray, folds: int, seed: int, refits: int) -> dict[str, Any]:
    """The out-of-fold AUROC and its interval from refitting on resampled questions."""
    ok = ~np.isnan(s)
    a = auroc(s[ok], y[ok]) if ok.any() else None
    if a is None:
        return {"feature": feature, "layer": layer, "auroc": None, "ci_low": np.nan,
                "ci_high": np.nan, "se": np.nan}
    keep = ~np.isnan(x).any(axis=1)
    se = refit_se(x[keep], y[keep], groups[keep], refits, folds, seed)
    lo, hi = normal_interval(a, se)
    return {"feature": feature, "layer": layer, "auroc": a, "ci_low": lo, "ci_high": hi,
            "se": se}
