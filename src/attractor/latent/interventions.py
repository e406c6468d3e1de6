"""Causal interventions on continuous thoughts: replace the input of one thought, let the loop
run on from there, and see whether the answer changes.

An intervention is a function ``(t, x) -> x'`` that :class:`~attractor.latent.loop.LatentLoop`
applies to the input of every thought ``t`` (0-based; ``x`` is the batch's fed-back input after
the stabilisers, shape (batch, d)). The ones here touch a single thought and return the others
unchanged:

- ``noise``: Gaussian noise of relative scale sigma (the latent-stability measure);
- ``zero``: the thought is a zero vector (it carries nothing);
- ``mean``: the thought is its mean over the evaluated questions (mean ablation: it carries
  only what every question's thought has in common);
- ``swap``: the thought is the same thought of another question (activation patching; the
  donor is the previous question of the batch).

A thought the answer depends on flips answers under ``zero``/``mean``/``swap``; one that is
ignored (or whose content the later thoughts recompute) does not. Thought numbers in the tables
are 1-based, as in :func:`attractor.latent.inspect.flip_rates`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import pandas as pd
import torch

from attractor.grading.extract import extract_answer
from attractor.latent.evaluate import correct_answers
from attractor.latent.loop import LatentLoop

Intervention = Callable[[int, torch.Tensor], torch.Tensor]
KINDS = ("zero", "mean", "swap")
BATCH = 32


def noise(t: int, sigma: float, gen: torch.Generator) -> Intervention:
    """Add Gaussian noise of relative scale ``sigma`` (per-row norm) to thought ``t``."""
    def fn(s: int, x: torch.Tensor) -> torch.Tensor:
        if s != t:
            return x
        z = torch.randn(x.shape, generator=gen, device="cpu").to(x.device, x.dtype)
        return x + sigma * x.norm(dim=-1, keepdim=True) * z / x.shape[-1] ** 0.5
    return fn


def zero(t: int) -> Intervention:
    """Feed a zero vector as thought ``t``."""
    return lambda s, x: torch.zeros_like(x) if s == t else x


def mean(t: int, value: torch.Tensor) -> Intervention:
    """Feed ``value`` (d,), the mean input of thought ``t``, to every question."""
    return lambda s, x: value.to(x.device, x.dtype).expand_as(x) if s == t else x


def swap(t: int) -> Intervention:
    """Feed each question the thought ``t`` of the previous question in its batch."""
    return lambda s, x: x.roll(1, dims=0) if s == t else x


@contextmanager
def intervening(loop: LatentLoop, fn: Intervention | None) -> Iterator[LatentLoop]:
    """Run ``loop`` with intervention ``fn`` inside the block; restored afterwards."""
    before, loop.intervention = loop.intervention, fn
    try:
        yield loop
    finally:
        loop.intervention = before


def batches(n: int, size: int = BATCH) -> list[slice]:
    """Slices of ``range(n)`` of at most ``size``; a last batch of one joins the one before, so
    every batch has a donor for ``swap`` (when n >= 2)."""
    cuts = list(range(0, n, size)) + [n]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:
        del cuts[-2]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:])]


@torch.no_grad()
def texts(loop: LatentLoop, prompts: list[list[int]], max_new_tokens: int = 32) -> list[str]:
    """The loop's answer text per prompt, batched as :func:`batches` says."""
    out: list[str] = []
    for sl in batches(len(prompts)):
        out += loop.generate(prompts[sl], max_new_tokens=max_new_tokens).texts
    return out


@torch.no_grad()
def mean_inputs(loop: LatentLoop, prompts: list[list[int]]) -> list[torch.Tensor]:
    """Mean fed-back input of each thought over ``prompts`` (clean runs), one (d,) per thought."""
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}

    def record(s: int, x: torch.Tensor) -> torch.Tensor:
        sums[s] = sums.get(s, 0) + x.float().sum(0)
        counts[s] = counts.get(s, 0) + x.shape[0]
        return x

    with intervening(loop, record):
        for sl in batches(len(prompts)):
            loop.think(prompts[sl], adaptive=False)
    return [sums[s] / counts[s] for s in sorted(sums)]


@torch.no_grad()
def intervention_table(loop: LatentLoop, problems, prompts: list[list[int]],
                       kinds: tuple[str, ...] = KINDS, max_new_tokens: int = 32) -> pd.DataFrame:
    """For every thought t and intervention kind: accuracy, its change against the clean loop,
    and the share of questions whose extracted answer flips. Thoughts run at the loop's
    configured halting; a question that halts before thought t is not touched by it."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown intervention {bad[0]!r}; expected one of {', '.join(KINDS)}")
    clean = texts(loop, prompts, max_new_tokens)
    base_ans = [extract_answer(x, p.kind) for x, p in zip(clean, problems)]
    base_acc = sum(correct_answers(clean, problems)) / max(len(problems), 1)
    means = mean_inputs(loop, prompts) if "mean" in kinds else []
    rows = []
    for t in range(loop.cfg.max_thoughts):
        for kind in kinds:
            fn = zero(t) if kind == "zero" else swap(t) if kind == "swap" else mean(t, means[t])
            with intervening(loop, fn):
                got = texts(loop, prompts, max_new_tokens)
            ans = [extract_answer(x, p.kind) for x, p in zip(got, problems)]
            acc = sum(correct_answers(got, problems)) / max(len(problems), 1)
            rows.append({"thought": t + 1, "intervention": kind, "accuracy": acc,
                         "accuracy_change": acc - base_acc,
                         "flip_rate": sum(a != b for a, b in zip(base_ans, ans))
                         / max(len(problems), 1),
                         "clean_accuracy": base_acc, "n": len(problems)})
    return pd.DataFrame(rows)
