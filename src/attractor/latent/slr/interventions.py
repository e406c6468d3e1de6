"""Causal interventions on continuous thoughts: replace the input of one thought, let the loop
run on from there, and see whether the answer changes.

An intervention is a function ``(t, x) -> x'`` that :class:`~attractor.latent.slr.loop.LatentLoop`
applies to the input of every thought ``t`` (``x`` is the batch's fed-back input after the
stabilisers, shape (batch, d)). Thoughts are numbered from 1 everywhere a user sees them: in
these functions (``zero(3)`` is the third thought), in the hooks' ``t`` and in the tables
(``LatentLoop.feed`` keeps its internal 0-based loop index). The ones here touch a single
thought and return the others unchanged:

- ``noise``: Gaussian noise of relative scale sigma (the latent-stability measure);
- ``zero``: the thought is a zero vector (it carries nothing);
- ``mean``: the thought is its mean over the evaluated questions (mean ablation: it carries
  only what every question's thought has in common);
- ``swap``: the thought is the same thought of another question (activation patching; the
  donor is the previous question of the batch); on every thought at once, the donor's whole
  clean chain is fed.

A thought the answer depends on flips answers under ``zero``/``mean``/``swap``; one that is
ignored (or whose content the later thoughts recompute) does not. Each kind also runs on every
thought at once (``t=None``; rows with ``scope="all"`` and ``thought=0``): if the answers barely
change then, the loop answers from the question and the thoughts do little of the reasoning.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import pandas as pd
import torch

from attractor.grading.extract import extract_answer
from attractor.grading.grade import correct_answers
from attractor.latent.command_config import INTERVENTIONS
from attractor.latent.slr.loop import LatentLoop

Intervention = Callable[[int, torch.Tensor], torch.Tensor]
KINDS = INTERVENTIONS
BATCH = 32


def noise(t: int, sigma: float, gen: torch.Generator) -> Intervention:
    """Add Gaussian noise of relative scale ``sigma`` (per-row norm) to thought ``t``."""
    def fn(s: int, x: torch.Tensor) -> torch.Tensor:
        if s != t:
            return x
        z = torch.randn(x.shape, generator=gen, device="cpu").to(x.device, x.dtype)
        return x + sigma * x.norm(dim=-1, keepdim=True) * z / x.shape[-1] ** 0.5
    return fn


def zero(t: int | None) -> Intervention:
    """Feed a zero vector as thought ``t`` (every thought when ``t`` is None)."""
    return lambda s, x: torch.zeros_like(x) if t is None or s == t else x


def mean(t: int | None, values: list[torch.Tensor]) -> Intervention:
    """Feed thought ``t`` (every thought when None) its mean input ``values[t - 1]`` (d,)."""
    return (lambda s, x: values[s - 1].to(x.device, x.dtype).expand_as(x)
            if t is None or s == t else x)


def swap(t: int) -> Intervention:
    """Feed each question thought ``t`` of the previous question in its batch."""
    return lambda s, x: x.roll(1, dims=0) if s == t else x


def swap_chain(chain: torch.Tensor) -> Intervention:
    """Feed each question every thought of the previous question's clean run (``chain``:
    (T, batch, d) clean inputs of one batch, as :func:`clean_inputs` gives)."""
    return lambda s, x: chain[s - 1].roll(1, dims=0).to(x.device, x.dtype)


def recorder(store: dict[int, torch.Tensor]) -> Intervention:
    """Leave every thought as it is and keep its input (detached) in ``store[t]`` (t from 1)."""
    def fn(s: int, x: torch.Tensor) -> torch.Tensor:
        store[s] = x.detach()
        return x
    return fn


Hook = Intervention | tuple[str, Intervention] | None


@contextmanager
def intervening(loop: LatentLoop, *hooks: Hook) -> Iterator[LatentLoop]:
    """Run ``loop`` with ``hooks`` on each thought's input inside the block, applied in order
    after the hooks already on it, and all removed together afterwards (TransformerLens's
    ``run_with_hooks``). A hook is a function ``(t, x) -> x`` (t numbers thoughts from 1) or a
    ``(name, function)`` pair; ``None`` adds nothing."""
    added = [h if isinstance(h, tuple) else (getattr(h, "__name__", "hook"), h)
             for h in hooks if h is not None]
    loop.hooks.extend(added)
    try:
        yield loop
    finally:
        for h in added:
            loop.hooks.remove(h)


def batches(n: int, size: int = BATCH) -> list[slice]:
    """Slices of ``range(n)`` of at most ``size``; a last batch of one joins the one before, so
    every batch has a donor for ``swap`` (when n >= 2)."""
    cuts = list(range(0, n, size)) + [n]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:
        del cuts[-2]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:])]


@torch.no_grad()
def texts(loop: LatentLoop, prompts: list[list[int]], max_new_tokens: int = 32,
          per_batch: list[Intervention] | None = None) -> list[str]:
    """The loop's answer text per prompt, batched as :func:`batches` says; ``per_batch[i]``,
    if given, is the intervention of batch i."""
    out: list[str] = []
    for i, sl in enumerate(batches(len(prompts))):
        with intervening(loop, per_batch[i] if per_batch else None):
            out += loop.generate(prompts[sl], max_new_tokens=max_new_tokens).texts
    return out


@torch.no_grad()
def clean_inputs(loop: LatentLoop, prompts: list[list[int]]) -> list[torch.Tensor]:
    """Every thought's fed-back input in clean runs of all T thoughts, one (T, batch, d)
    tensor per batch of :func:`batches`."""
    chains = []
    for sl in batches(len(prompts)):
        fed: dict[int, torch.Tensor] = {}
        with intervening(loop, recorder(fed)):
            loop.think(prompts[sl], adaptive=False)
        chains.append(torch.stack([fed[s] for s in sorted(fed)]))
    return chains


def mean_inputs(chains: list[torch.Tensor]) -> list[torch.Tensor]:
    """Mean input of each thought over all questions of :func:`clean_inputs`' ``chains``."""
    every = torch.cat([c.float() for c in chains], dim=1)   # (T, n, d)
    return list(every.mean(1))


@torch.no_grad()
def intervention_table(loop: LatentLoop, problems, prompts: list[list[int]],
                       kinds: tuple[str, ...] = KINDS, max_new_tokens: int = 32,
                       on_step=None) -> pd.DataFrame:
    """For every thought t (and all thoughts at once: ``scope="all"``, ``thought=0``) and
    intervention kind: accuracy, its change against the clean loop, and the share of questions
    whose extracted answer flips. Thoughts run at the loop's configured halting; a question
    that halts before thought t is not touched by it. ``on_step()`` follows each of the
    1 + (T + 1) x len(kinds) runs of the loop (progress)."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown intervention {bad[0]!r}; expected one of {', '.join(KINDS)}")
    clean = texts(loop, prompts, max_new_tokens)
    if on_step:
        on_step()
    base_ans = [extract_answer(x, p.kind) for x, p in zip(clean, problems)]
    base_acc = sum(correct_answers(clean, problems)) / max(len(problems), 1)
    chains = clean_inputs(loop, prompts) if {"mean", "swap"} & set(kinds) else []
    means = mean_inputs(chains) if "mean" in kinds else []
    rows = []
    for t in [*range(1, loop.cfg.max_thoughts + 1), None]:
        for kind in kinds:
            if kind == "swap" and t is None:
                got = texts(loop, prompts, max_new_tokens, [swap_chain(c) for c in chains])
            else:
                fn = zero(t) if kind == "zero" else swap(t) if kind == "swap" else mean(t, means)
                with intervening(loop, fn):
                    got = texts(loop, prompts, max_new_tokens)
            if on_step:
                on_step()
            ans = [extract_answer(x, p.kind) for x, p in zip(got, problems)]
            acc = sum(correct_answers(got, problems)) / max(len(problems), 1)
            rows.append({"thought": 0 if t is None else t,
                         "scope": "all" if t is None else "one", "intervention": kind,
                         "accuracy": acc,
                         "accuracy_change": acc - base_acc,
                         "flip_rate": sum(a != b for a, b in zip(base_ans, ans))
                         / max(len(problems), 1),
                         "clean_accuracy": base_acc, "n": len(problems)})
    return pd.DataFrame(rows)
