"""LatentSeek on continuous thoughts: test-time, per-question policy gradient on the thoughts
(after Li et al. 2025, "Seek in the Dark: Reasoning via Test-Time Instance-Level Policy
Gradient in Latent Space", which optimises the latent states of a token CoT; here the latent
states are the loop's own thoughts, so nothing has to be re-encoded).

For each question the T fed-back thought inputs ``x`` of a clean run (fixed T, the loop's
``max_thoughts``) become parameters ``z = x + rms(x) * u`` with ``u = 0`` at the start (so the
learning rate is in units of each thought's RMS per element). Every update samples ``samples``
answers after the thoughts ``z`` at ``temperature``, scores them with the reward, and takes one
Adam step on ``u`` along the REINFORCE gradient ``-mean_i (r_i - mean r) grad log p(answer_i|z)``.
A question stops when the mean reward of its samples reaches ``threshold`` (checked before each
update) or after ``iterations`` updates; its answer is then decoded greedily after its last
``z``. The model's weights never change.

Rewards:

- ``vote``: 1 when a sample's answer is the majority answer of its samples (label-free
  self-consistency). It only moves questions whose samples disagree, toward the answer they
  already favour: it steers unstable thoughts into a stable attractor.
- ``oracle``: 1 when the sample is correct. This reads the gold answer: an upper bound on what
  searching the thoughts can reach (the paper's "perfect sparse reward model"), never an
  accuracy to report as a method's.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from attractor.metrics.answers import majority_class
from attractor.errors import UserError
from attractor.grading.extract import extract_answer
from attractor.grading.grade import correct_answers
from attractor.latent.slr.interventions import intervening, recorder
from attractor.latent.slr.loop import LatentLoop
from attractor.latent.seek.config import SeekConfig
from attractor.store.run_store import atomic_write_bytes, atomic_write_json

def rewards(answers: list[str | None], problems, texts: list[str], reward: str) -> list[float]:
    """Reward of each sampled answer of ONE question (``problems`` repeats that question)."""
    if reward == "oracle":
        return [float(c) for c in correct_answers(texts, problems)]
    top = majority_class(answers)
    return [float(a is not None and a == top) for a in answers]


def _feeding(z: torch.Tensor):
    """Intervention feeding row i the thoughts ``z[i]`` (rows, T, d) instead of its own."""
    return lambda t, x: z[:, t - 1].to(x.dtype)  # thoughts numbered from 1


def seek(loop: LatentLoop, problems, prompts: list[list[int]], cfg: SeekConfig,
         on_batch=None, out: Path | None = None, source: str = "") -> pd.DataFrame:
    """Run LatentSeek on every question; one row per question (before/after answers and
    correctness, updates taken, final mean reward, forward passes, wall seconds).
    ``on_batch(n)`` is called after each batch of n questions (progress). With ``out``, each
    batch is stored under ``out/latentseek.parts/`` as it finishes and a rerun with the same
    settings resumes after the last stored batch (each batch has its own seeded sampler, so a
    resumed run equals an uninterrupted one); the whole table goes to
    ``out/latentseek.parquet``. ``source`` (e.g. the checkpoint's path) is kept with the
    settings: parts of another source are refused too."""
    parts = _parts_dir(out, cfg, problems, source) if out is not None else None
    frames = []
    for start in range(0, len(prompts), cfg.batch):
        part = parts / f"{start:06d}.parquet" if parts is not None else None
        if part is not None and part.exists():
            df = pd.read_parquet(part)
        else:
            sl = slice(start, start + cfg.batch)
            df = _seek_batch(loop, problems[sl], prompts[sl], cfg,
                             torch.Generator().manual_seed(cfg.seed * 1_000_003 + start))
            if part is not None:
                atomic_write_bytes(part, df.to_parquet(index=False))
        frames.append(df)
        if on_batch:
            on_batch(len(df))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if out is not None:
        atomic_write_bytes(Path(out) / "latentseek.parquet", table.to_parquet(index=False))
    return table


def _parts_dir(out: Path, cfg: SeekConfig, problems, source: str) -> Path:
    """``out/latentseek.parts`` for these settings, questions and source; refuses parts
    written with others (their rows would not belong to this run)."""
    parts = Path(out) / "latentseek.parts"
    want = {"config": asdict(cfg), "source": source, "questions": [p.id for p in problems]}
    stamp = parts / "run.json"
    if stamp.exists():
        if json.loads(stamp.read_text()) != want:
            raise UserError(f"{stamp}: written by a LatentSeek run with other settings, "
                            "checkpoint or questions; use another --out or delete that folder")
    else:
        parts.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stamp, want)
    return parts


def _seek_batch(loop: LatentLoop, qs, ps: list[list[int]], cfg: SeekConfig,
                gen: torch.Generator) -> pd.DataFrame:
    """LatentSeek on one batch of questions, side by side (see the module docstring)."""
    T, k = loop.cfg.max_thoughts, cfg.samples
    t0 = time.perf_counter()
    b = len(ps)
    fed: dict[int, torch.Tensor] = {}
    with torch.no_grad(), intervening(loop, recorder(fed)):
        clean = loop.generate(ps, cfg.max_new_tokens, n_thoughts=T)
    x0 = torch.stack([fed[t].float() for t in range(1, T + 1)], dim=1)  # (b, T, d)
    scale = x0.pow(2).mean(-1, keepdim=True).sqrt()
    u = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([u], lr=cfg.lr)
    passes = list(clean.forward_passes)
    updates, final_reward = [0] * b, [float("nan")] * b
    final_z: list[torch.Tensor | None] = [None] * b
    active = list(range(b))
    for it in range(cfg.iterations + 1):
        if not active:
            break
        z = (x0 + scale * u)[active]
        zz = z.detach().repeat_interleave(k, 0)
        rp = [ps[i] for i in active for _ in range(k)]
        with torch.no_grad(), intervening(loop, _feeding(zz)):
            out = loop.generate(rp, cfg.max_new_tokens, n_thoughts=T,
                                temperature=cfg.temperature, generator=gen)
        keep, adv = [], []
        for j, i in enumerate(active):
            sl = slice(j * k, (j + 1) * k)
            passes[i] += sum(out.forward_passes[sl])
            ans = [extract_answer(x, qs[i].kind) for x in out.texts[sl]]
            r = rewards(ans, [qs[i]] * k, out.texts[sl], cfg.reward)
            final_reward[i] = sum(r) / k
            if final_reward[i] >= cfg.threshold or it == cfg.iterations:
                final_z[i] = z[j].detach()
            else:
                keep.append(j)
                adv += [x - final_reward[i] for x in r]
        if keep:
            rows_j = [j * k + s for j in keep for s in range(k)]
            zk = (x0 + scale * u)[[active[j] for j in keep]].repeat_interleave(k, 0)
            with intervening(loop, _feeding(zk)):
                logp, grad_passes = loop.answer_logprobs(
                    [rp[r] for r in rows_j], [T] * len(rows_j),
                    [out.token_ids[r] for r in rows_j])
            loss = -(torch.tensor(adv, device=logp.device) * logp).sum() / k
            opt.zero_grad()
            (u.grad,) = torch.autograd.grad(loss, [u])
            opt.step()
            for n, j in enumerate(keep):
                updates[active[j]] += 1
                passes[active[j]] += sum(grad_passes[n * k:(n + 1) * k])  # counted, per row
        active = [active[j] for j in keep]
    with torch.no_grad(), intervening(loop, _feeding(torch.stack(final_z))):
        after = loop.generate(ps, cfg.max_new_tokens, n_thoughts=T)
    wall = (time.perf_counter() - t0) / b
    before_ok = correct_answers(clean.texts, qs)
    after_ok = correct_answers(after.texts, qs)
    return pd.DataFrame([
        {"question_id": p.id,
         "answer_before": extract_answer(clean.texts[i], p.kind),
         "answer_after": extract_answer(after.texts[i], p.kind),
         "correct_before": before_ok[i], "correct_after": after_ok[i],
         "updates": updates[i], "final_reward": final_reward[i],
         "forward_passes": passes[i] + after.forward_passes[i],
         "clean_forward_passes": clean.forward_passes[i], "wall_s": wall}
        for i, p in enumerate(qs)])


def summary(df: pd.DataFrame, reward: str) -> pd.DataFrame:
    """Two rows: the clean loop (greedy, fixed T) and LatentSeek with ``reward``."""
    return pd.DataFrame([
        {"method": "loop", "accuracy": df["correct_before"].mean(),
         "forward_passes": df["clean_forward_passes"].mean(), "updates": 0.0,
         "changed": 0.0},
        {"method": f"latentseek-{reward}", "accuracy": df["correct_after"].mean(),
         "forward_passes": df["forward_passes"].mean(), "updates": df["updates"].mean(),
         "changed": (df["answer_before"] != df["answer_after"]).mean()}])
