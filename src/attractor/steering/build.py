"""Building steering vectors from a run.

- ``fractional`` (Fractional Reasoning, arXiv 2506.15882; shengliu66/FractionalReason
  ``tasks/base.py`` obtain_icv, ``utils/tools.py`` apply_template): each of the run's questions
  is written twice, after a negative instruction ("Solve the problem with direct answering.")
  and a positive one ("Solve the problem with step-by-step detailed reasoning."); the state of
  the last prompt token after every block is read for both, and the per-question differences
  (positive minus negative, every layer concatenated) are fitted with a rank-1 PCA that keeps
  the mean. The direction is PC1, its sign turned toward the mean difference, plus the mean
  difference, cut back into one row per block. (Their code also strips punctuation from the
  contrastive texts; we keep the texts as the model sees them, and say so in docs/probes-steering.md.)
- ``stability``: the mean hidden state of the first K completion tokens of rollouts that are
  correct on stable questions, minus that of rollouts on unstable questions, per block (the
  stability labels of ``attractor analyze``: a question is stable when its top-1 share is above
  the run's median). Built from the run's questions only, so evaluate it on others
  (``sample --offset``).

Row ``i`` of a vector is the output of decoder block ``i``, read where their tracer
(``llm_layers.py``/``forward_tracer.py``) hooks the decoder layers: the last row is the last
block's own output, before the final norm (``output_hidden_states`` index ``i + 1`` for the
other rows).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from attractor.checks import check_destination, check_positive
from attractor.capture.positions import Target
from attractor.capture.reforward import BatchItem, capture_batch, plan_batches
from attractor.errors import ConfigError, UserError
from attractor.steering.vector import SteeringVector
from attractor.store.environment import now

POSITIVE = "Solve the problem with step-by-step detailed reasoning. {question}"
NEGATIVE = "Solve the problem with direct answering. {question}"
KINDS = ("fractional", "stability")


def fractional_direction(diffs: np.ndarray) -> np.ndarray:
    """Their obtain_icv on rows of differences ``(n, L*d)``: PC1 (rank-1 PCA of the centred
    differences) with its sign turned toward the mean difference, plus the mean difference."""
    from sklearn.decomposition import PCA

    diffs = np.asarray(diffs, np.float64)
    mean = diffs.mean(0)
    if len(diffs) < 2 or not np.ptp(diffs, axis=0).any():
        return mean.astype(np.float32)
    pc1 = PCA(n_components=1, svd_solver="full").fit(diffs).components_[0]
    sign = np.sign(pc1 @ mean) or 1.0
    return (pc1 * sign + mean).astype(np.float32)


def _states(model, items: list[BatchItem], n_layers: int, pad: int, max_tokens: int
            ) -> np.ndarray:
    """Captured vectors ``(n_targets, n_layers, d)`` at hidden indices 1..n_layers, item order."""
    layers = list(range(1, n_layers + 1))
    order, got = [], {layer: [] for layer in layers}
    for batch in plan_batches([len(it.ids) for it in items], max_tokens):
        out = capture_batch(model, [items[i] for i in batch], layers, pad,
                            last_before_norm=True)
        for layer in layers:
            got[layer].append(out[layer])
        order += batch
    x = np.stack([torch.cat(got[layer]).numpy() for layer in layers], axis=1)
    inverse = np.empty(len(order), dtype=int)
    inverse[np.asarray(order)] = np.arange(len(order))  # one target per item
    return x[inverse]


def build_fractional(model, tokenizer, problems, *, chat_template: bool, positive: str,
                     negative: str, max_tokens: int = 16384) -> tuple[np.ndarray, dict[str, Any]]:
    """Directions ``(L, d)`` from contrastive prompts over ``problems``."""
    from attractor.tasks.prompts import check_template, prompt_ids

    check_template(positive, "--positive")
    check_template(negative, "--negative")
    if positive == negative:
        raise ConfigError("--positive and --negative are the same template")
    n_layers = int(model.config.num_hidden_layers)
    items = []
    for p in problems:
        for tpl in (negative, positive):
            ids = prompt_ids(p, tokenizer, chat_template, tpl)
            items.append(BatchItem(ids, [Target("last", 0, len(ids) - 1, len(ids))]))
    pad = tokenizer.pad_token_id or 0
    x = _states(model, items, n_layers, pad, max_tokens)
    neg, pos = x[0::2], x[1::2]
    diffs = (pos - neg).reshape(len(problems), -1)
    direction = fractional_direction(diffs).reshape(n_layers, -1)
    return direction, {"positive": positive, "negative": negative,
                       "position": "last prompt token", "n_questions": len(problems)}


def build_stability(questions, model, tokenizer, *, tokens: int, max_tokens: int = 16384
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Directions ``(L, d)``: stable-and-correct minus unstable rollouts (see module doc);
    ``questions`` are mechanism :class:`Question` objects."""
    if tokens <= 0:
        raise ConfigError(f"--tokens must be positive, got {tokens}")
    n_layers = int(model.config.num_hidden_layers)
    items, group = [], []
    for q in questions:
        for r in q.rollouts:
            if not r.completion_ids:
                continue
            if q.stable and r.correct:
                group.append(1)
            elif not q.stable:
                group.append(0)
            else:
                continue
            p, k = len(r.prompt_ids), min(tokens, len(r.completion_ids))
            items.append(BatchItem(r.ids[:p + k], [Target("first", 0, p, p + k)]))
    g = np.asarray(group)
    if not (g == 1).any() or not (g == 0).any():
        raise UserError("the run has no stable-and-correct rollouts or no unstable ones: no "
                        "stability direction to build")
    x = _states(model, items, n_layers, tokenizer.pad_token_id or 0, max_tokens)
    direction = x[g == 1].mean(0) - x[g == 0].mean(0)
    return direction.astype(np.float32), {
        "position": f"mean of the first {tokens} completion tokens", "tokens": tokens,
        "n_stable_correct": int((g == 1).sum()), "n_unstable": int((g == 0).sum())}


def run_steer_build(run: str, kind: str, out: str, *, positive: str = POSITIVE,
                    negative: str = NEGATIVE, tokens: int = 16, device: str = "auto",
                    dtype: str = "auto", max_tokens: int = 16384,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build a ``kind`` vector from run ``run`` and write it to ``out``."""
    from attractor.run_model import MechanismRun

    check_positive(max_tokens, "--max-tokens-per-batch")
    check_positive(tokens, "--tokens")
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not out.endswith(".safetensors"):
        raise ConfigError(f"--out {out}: expected a .safetensors file name")
    check_destination(out, kind="file")
    mr = MechanismRun(run, "steer", device=device, dtype=dtype, writes=False)
    cfg = mr.store.manifest.config or {}
    problems = list(mr.problems.values())
    if kind == "fractional":
        d, info = build_fractional(mr.model, mr.tokenizer, problems,
                                   chat_template=bool(cfg.get("chat_template", True)),
                                   positive=positive, negative=negative, max_tokens=max_tokens)
    else:
        qs = [q for chunk in mr.questions(set(), chunk=32) for q in chunk]
        d, info = build_stability(qs, mr.model, mr.tokenizer, tokens=tokens,
                                  max_tokens=max_tokens)
    task = mr.store.manifest.task or {}
    meta = {"kind": kind, "run": str(mr.store.path), "model": mr.spec,
            "weights_sha256": mr.sha, "layers": f"after each block's MLP, 0..{len(d) - 1}",
            "task": task.get("spec"), "task_sha256": task.get("sha256"),
            "questions": [p.id for p in problems], "created": now(), **info}
    SteeringVector(d, meta).save(out)
    norms = np.linalg.norm(d, axis=1)
    log(f"{kind} vector from {len(problems)} questions of {run}: {d.shape[0]} layers x "
        f"{d.shape[1]} dims, per-layer norm {norms.min():.3g}..{norms.max():.3g} -> {out}")
    return {"out": out, "layers": int(d.shape[0]), "hidden_size": int(d.shape[1]),
            "norms": norms.tolist(), **info}
