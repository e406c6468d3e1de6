"""Probe features of each rollout: hidden states of the first N completion tokens (the state at
the N-th completion token; N = 0 is the prompt's last token) at chosen layers, captured by a
hooked teacher-forced re-forward of the rollout's prefix only, and the baselines read from the
stored rollout (prompt length, hops, DeepConf confidence and token entropy of the prefix)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from attractor.capture.positions import Target
from attractor.capture.reforward import BatchItem, capture_batch, plan_batches
from attractor.tasks.problem import ANSWER_MARK


@dataclass
class FeatureSet:
    """Rows are (rollout, N) pairs that exist and hold no answer yet."""

    hidden: dict[int, list[np.ndarray]] = field(default_factory=dict)   # layer -> rows
    n_tokens: list[int] = field(default_factory=list)
    question_id: list[str] = field(default_factory=list)
    sample_id: list[int] = field(default_factory=list)
    baselines: dict[str, list[float]] = field(default_factory=dict)
    skipped_short: int = 0
    skipped_answered: int = 0


def prefix_ok(tokenizer, completion_ids: list[int], n: int) -> str | None:
    """None when the first ``n`` completion tokens exist and hold no answer marker; else why."""
    if n > len(completion_ids):
        return "short"
    if n and ANSWER_MARK in tokenizer.decode(completion_ids[:n], skip_special_tokens=True):
        return "answered"
    return None


def collect(model, tokenizer, questions, layers: list[int], ns: list[int], fs: FeatureSet,
            max_tokens: int = 16384) -> None:
    """Add the rows of ``questions`` (mechanism :class:`Question` objects) to ``fs``."""
    items, rows = [], []
    for q in questions:
        hops = q.problem.meta.get("hops") if isinstance(q.problem.meta, dict) else None
        for r in q.rollouts:
            p = len(r.prompt_ids)
            targets = []
            for n in ns:
                why = prefix_ok(tokenizer, r.completion_ids, n)
                if why == "short":
                    fs.skipped_short += 1
                    continue
                if why == "answered":
                    fs.skipped_answered += 1
                    continue
                targets.append(Target(f"n:{n}", 0, p - 1 + n, p + n))
                rows.append((r, n, hops))
            if targets:
                end = max(t.end for t in targets)
                items.append(BatchItem(r.ids[:end], targets))
    if not items:
        return
    pad = tokenizer.pad_token_id or 0
    got: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    order = []
    for batch in plan_batches([len(it.ids) for it in items], max_tokens):
        out = capture_batch(model, [items[i] for i in batch], layers, pad)
        for layer in layers:
            got[layer].append(out[layer])
        order += batch
    # capture_batch returns targets in batch order; put rows back in item order
    starts = np.cumsum([0] + [len(it.targets) for it in items])
    perm = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in order])
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    for layer in layers:
        fs.hidden.setdefault(layer, []).append(torch.cat(got[layer]).numpy()[inverse])
    for r, n, hops in rows:
        fs.n_tokens.append(n)
        fs.question_id.append(r.question_id)
        fs.sample_id.append(r.sample_id)
        b = fs.baselines
        b.setdefault("question_length", []).append(float(len(r.prompt_ids)))
        b.setdefault("hops", []).append(float(hops) if hops is not None else np.nan)
        conf, ent = r.extra.get("token_confidences"), r.extra.get("token_entropies")
        b.setdefault("confidence", []).append(
            float(np.mean(conf[:n])) if n and conf is not None and len(conf) >= n else np.nan)
        b.setdefault("entropy", []).append(
            float(np.mean(ent[:n])) if n and ent is not None and len(ent) >= n else np.nan)
