"""``attractor patch RUN``: activation patching between a correct and a wrong rollout of each
question (both directions) and a noise-corruption baseline, into ``metrics/patching.parquet``
and ``patching_summary.json``. See :mod:`attractor.mechanism.patching`."""
from __future__ import annotations

import zlib
from typing import Any, Callable

import pandas as pd

from attractor.errors import ConfigError
from attractor.mechanism.modules import decoder_modules
from attractor.mechanism.patching import (Site, causal_trace, embedding_sigma,
                                          noisy_embeds, patch_sweep, source_states,
                                          subject_positions)
from attractor.mechanism.forward import lens_logits
from attractor.mechanism.prosqa_steps import proof_steps, sentence_spans
from attractor.mechanism.patching import site_kind
from attractor.run_model import MechanismRun, RunRollout
from attractor.ui import progress_bar

FRACTIONS = (0.25, 0.5, 0.75)   # the "steps" of a task without a parsed proof


def step_positions(mr: MechanismRun, r: RunRollout, kind: str) -> list[int]:
    """Absolute token indices of a rollout's steps: ProsQA proof-step queries, else the
    completion tokens at 1/4, 1/2 and 3/4."""
    if kind == "prosqa":
        _, pairs = sentence_spans(mr.tokenizer, r.prompt_ids)
        steps = proof_steps(mr.tokenizer, len(r.prompt_ids), r.completion_ids, r.text, pairs)
        return [s.query for s in steps]
    c = len(r.completion_ids)
    return sorted({len(r.prompt_ids) + int(f * (c - 1)) for f in FRACTIONS}) if c else []


def _sites(base: RunRollout, source: RunRollout, d_base: int, d_src: int, steps: list[int]
           ) -> list[Site]:
    p = len(base.prompt_ids)
    sites = [Site("prompt_last", p - 1, len(source.prompt_ids) - 1)]
    for k, t in enumerate(steps):
        s = t - p + len(source.prompt_ids)       # aligned from the end of the prompt
        if t < d_base and s < len(source.ids):
            sites.append(Site(f"step:{k}", t, s))
    sites.append(Site("decisive", d_base, d_src))
    return sites


def run_patch(run: str, *, pairs: int = 1, noise: bool = True, trace_draws: int = 0,
              model: str | None = None, device: str = "auto", dtype: str = "auto",
              seed: int = 0, show_progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Patch every question with a correct and a wrong rollout, and causal-trace its correct
    rollout as the reference does (``trace_draws`` noise draws; 0: no trace) (resumable)."""
    if pairs < 1:
        raise ConfigError(f"--pairs must be at least 1, got {pairs}")
    if trace_draws < 0:
        raise ConfigError(f"--trace-draws must be 0 (no causal trace) or more, got {trace_draws}")
    mr = MechanismRun(run, "patch", model=model, device=device, dtype=dtype)
    mods = decoder_modules(mr.model)
    table = mr.table("patching")
    done = mr.begin({"pairs": pairs, "noise": noise, "seed": seed, "trace_draws": trace_draws},
                    [table])
    counts = {"no_decisive": 0, "no_subject": 0}
    sigma = _subject_sigma(mr, mods) if trace_draws else None
    todo = len(mr.labels) - len(done & set(mr.labels["question_id"]))
    with progress_bar(show_progress) as bar:
        task = bar.add_task("patching", total=todo)
        for chunk in mr.questions(done, chunk=4):
            frames = []
            for q in chunk:
                dec = {}
                for r in q.rollouts:
                    d = mr.decisive(q, r)
                    if d is not None:
                        dec[r.sample_id] = len(r.prompt_ids) + d
                    else:
                        counts["no_decisive"] += 1
                right = [r for r in q.rollouts if r.correct and r.sample_id in dec]
                wrong = [r for r in q.rollouts if not r.correct and r.sample_id in dec]
                rows = []
                chosen = _pairs(right, wrong, dec, pairs)
                reason = ("no_correct_or_no_wrong" if not right or not wrong else
                          "same_decisive_token" if not chosen else None)
                for c, w in chosen:
                    dc, dw = dec[c.sample_id], dec[w.sample_id]
                    rows += _pair_rows(mr, mods, q, c, w, dc, dw, c.ids[dc + 1], w.ids[dw + 1],
                                       noise, seed)
                if not rows:   # recorded (with why) so a resumed run does not try it again
                    rows.append({"question_id": q.problem.id, "direction": "none",
                                 "position": reason})
                if trace_draws and right and sigma is not None:
                    got = _trace_rows(mr, mods, q, right[0], dec[right[0].sample_id], sigma,
                                      trace_draws, seed)
                    counts["no_subject"] += not got
                    rows += got
                frames.append(pd.DataFrame(rows))
            table.append(pd.concat(frames, ignore_index=True))
            bar.update(task, advance=len(chunk))
    out = mr.finish([table])["patching"]
    skipped = out[out["direction"] == "none"]
    pairs_done = out[~out["direction"].isin(["none", "trace"])]
    counts.update({"questions_patched": int(pairs_done["question_id"].nunique()),
                   "questions_traced": int(out.loc[out["direction"] == "trace",
                                                   "question_id"].nunique()),
                   "no_correct_or_no_wrong": int((skipped["position"]
                                                  == "no_correct_or_no_wrong").sum()),
                   "same_decisive_token": int((skipped["position"]
                                               == "same_decisive_token").sum())})
    mr.store.update_stage("patch", trace_sigma=sigma, **counts)
    summary = patch_summary(out)
    summary["counts"] = counts
    mr.store.write_metric_json("patching_summary", summary)
    return {"counts": counts, "summary": summary}


def _pairs(right: list[RunRollout], wrong: list[RunRollout], dec: dict[int, int], k: int
           ) -> list[tuple[RunRollout, RunRollout]]:
    """Up to ``k`` (correct, wrong) pairs, in sample order, each rollout used once, whose
    decisive tokens differ (a wrong answer can share the right one's concept and name another
    person: no logit difference separates them)."""
    out, used = [], set()
    for c in right:
        for w in wrong:
            if w.sample_id in used or len(out) >= k:
                continue
            if c.ids[dec[c.sample_id] + 1] != w.ids[dec[w.sample_id] + 1]:
                out.append((c, w))
                used.add(w.sample_id)
                break
    return out


def _pair_rows(mr, mods, q, c: RunRollout, w: RunRollout, dc: int, dw: int, tok_c: int, tok_w: int,
               noise: bool, seed: int) -> list[dict]:
    kind = q.problem.kind
    rows: list[dict] = []
    plans = [("c->w", w, c, dw, dc), ("w->c", c, w, dc, dw)]
    for direction, base, source, d_base, d_src in plans:
        sites = _sites(base, source, d_base, d_src, step_positions(mr, base, kind))
        src = source_states(mods, source.ids, [s.source for s in sites] + [d_src])
        got = patch_sweep(mods, base.ids, d_base, sites, src,
                          lens_logits(mods, src.resid[-1][-1:])[0], tok_c, tok_w)
        rows += [{"question_id": q.problem.id, "direction": direction,
                  "base_sample": base.sample_id, "source_sample": source.sample_id, **r}
                 for r in got["rows"]]
    if noise:
        steps = step_positions(mr, c, kind)
        sites = [Site("prompt_last", len(c.prompt_ids) - 1, len(c.prompt_ids) - 1)] + [
            Site(f"step:{k}", t, t) for k, t in enumerate(steps) if t < dc] + [
            Site("decisive", dc, dc)]
        src = source_states(mods, c.ids, [s.source for s in sites] + [dc])
        emb = noisy_embeds(mods, c.ids, len(c.prompt_ids),
                           seed + zlib.crc32(q.problem.id.encode()))
        got = patch_sweep(mods, c.ids, dc, sites, src, lens_logits(mods, src.resid[-1][-1:])[0],
                          tok_c, tok_w, base_embeds=emb)
        rows += [{"question_id": q.problem.id, "direction": "noise",
                  "base_sample": c.sample_id, "source_sample": c.sample_id, **r}
                 for r in got["rows"]]
    return rows


def _subject_sigma(mr: MechanismRun, mods) -> float | None:
    """The noise scale's sigma over the subject tokens of every question's prompt (all of the
    run's, so a resumed command uses the same), None when no prompt names a subject."""
    tokens: list[int] = []
    for chunk in mr.questions(set(), chunk=32):
        for q in chunk:
            if q.rollouts:
                p = q.rollouts[0].prompt_ids
                tokens += [p[i] for i in subject_positions(mr.tokenizer, p, q.problem.kind)]
    return embedding_sigma(mods, tokens) if len(tokens) > 1 else None


def _trace_rows(mr, mods, q, c: RunRollout, dc: int, sigma: float, draws: int, seed: int
                ) -> list[dict]:
    """The reference's causal trace of one correct rollout: its subject corrupted, read at its
    decisive position for its own decisive token; [] when its prompt names no subject."""
    subject = subject_positions(mr.tokenizer, c.prompt_ids, q.problem.kind)
    if not subject:
        return []
    p = len(c.prompt_ids)
    sites = [Site("subject_first", subject[0], subject[0]),
             Site("subject_last", subject[-1], subject[-1]),
             Site("prompt_last", p - 1, p - 1)] + [
        Site(f"step:{k}", t, t) for k, t in enumerate(step_positions(mr, c, q.problem.kind))
        if t < dc] + [Site("decisive", dc, dc)]
    got = causal_trace(mods, c.ids, subject, dc, c.ids[dc + 1], sites, sigma,
                       seed + zlib.crc32(q.problem.id.encode()), draws)
    return [{"question_id": q.problem.id, "direction": "trace", "base_sample": c.sample_id,
             "source_sample": c.sample_id, **r} for r in got["rows"]]




def patch_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Mean effect and flip rate by direction, site kind and layer (per-question means first,
    then the mean over questions with a bootstrap interval)."""
    from attractor.metrics.answers import bootstrap_ci

    df = df[df["direction"] != "none"]
    out: dict[str, Any] = {"n_questions": int(df["question_id"].nunique()) if len(df) else 0}
    if df.empty:
        return out
    df = df.assign(site=df["position"].map(site_kind))
    grid: dict[str, Any] = {}
    for (direction, site, layer), sub in df.groupby(["direction", "site", "layer"]):
        per_q = sub.groupby("question_id").agg(effect=("effect", "mean"),
                                               flipped=("flipped", "mean"))
        m, lo, hi = bootstrap_ci(per_q["effect"].tolist())
        grid.setdefault(direction, {}).setdefault(site, {})[int(layer)] = {
            "effect": m, "effect_ci": [lo, hi],
            "flip_rate": (float(per_q["flipped"].mean()) if per_q["flipped"].notna().any()
                          else None),
            "n_questions": int(len(per_q))}
    out["effect"] = grid
    return out
