"""``attractor latent train --method colar``: CoLaR's supervised stage (see
:mod:`attractor.latent.colar.model`) on a task's chain of thought, or with ``--do-rl`` its RL stage
(:mod:`attractor.latent.colar.rl`) from a colar checkpoint.

Each batch draws its compression factor c from 1..``--compression`` (seeded by the step, so a
resumed run draws the same); the base model and the latent head train together with AdamW for
``--epochs-per-stage`` passes over the questions. A checkpoint (model, head, optimiser, position)
is written every ``ckpt_every`` steps as safetensors; running the same command again resumes
from it. With ``--dev-task`` each epoch ends with greedy dev accuracy at c = ``--compression``.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from attractor.checks import check_destination
from attractor.errors import DataError, UserError
from attractor.latent.checkpoint import load_checked, read_meta, save_loop
from attractor.latent.colar.model import CoLaR, ColarConfig
from attractor.latent.colar.rl import rl_step
from attractor.latent.slr.curriculum import check_steps, cot_steps
from attractor.latent.slr.train_config import LatentTrainConfig
from attractor.training.steps import after_epoch, after_step, recent_loss
from attractor.training.state import (epoch_order, load_optimizer, load_training_base,
                                          resume, save_state)
from attractor.tasks.problem import ANSWER_MARK


def colar_examples(problems, steps: list[list[str]], tok, marker_id: int
                   ) -> tuple[list[list[int]], list[list[int]]]:
    """Per problem: the chain of thought's token ids and the ids after it (marker, answer, end
    of text), tokenised as the one text ``" step step ... ### answer"``."""
    eos = tok.eos_token_id
    chains, answers = [], []
    for p, s in zip(problems, steps):
        chain = tok(" " + " ".join(s), add_special_tokens=False)["input_ids"] if s else []
        answer = tok(" " + ANSWER_MARK + " " + p.gold, add_special_tokens=False)["input_ids"]
        if not answer or answer[0] != marker_id:
            raise DataError(f"{p.id}: the answer text does not start with the marker token "
                            f"{ANSWER_MARK!r} under this tokenizer")
        chains.append(chain)
        answers.append(answer + ([eos] if isinstance(eos, int) else []))
    return chains, answers


def train_colar(cfg: LatentTrainConfig, log: Callable[[str], None] = print,
                data_dir: str | None = None) -> dict[str, Any]:
    """Train (or resume) a CoLaR model; returns a summary (with training tokens per second)."""
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import progress_bar

    torch.set_num_threads(cfg.threads)
    problems, source = load_task(cfg.task, data_dir=data_dir)
    if cfg.do_rl:  # the reward is correctness: every question needs a gold answer
        missing = [p.id for p in problems if not str(p.gold or "").strip()]
        if missing:
            raise DataError(f"{cfg.task}: {len(missing)} questions have no gold answer (first: "
                            f"{missing[0]}); the RL reward is not defined without one")
    else:
        check_steps(problems, cfg.task)
    tb = load_training_base(cfg)
    model, tok, dev, autocast = tb.model, tb.tok, tb.device, tb.autocast
    base_sha, init_meta = tb.base_sha, tb.init_meta
    torch.manual_seed(cfg.seed)
    if init_meta is not None and init_meta.get("method") == "colar":
        # a colar --init brings its latent head and its shape (embedding std, head width)
        colar = CoLaR(model, tok, ColarConfig.from_dict(init_meta["colar"])).to(dev)
        load_checked(colar, model, load_file(Path(cfg.init) / "model.safetensors", device=dev),
                     Path(cfg.init))
    elif cfg.do_rl:
        raise UserError(f"{cfg.init}: a {init_meta and init_meta.get('method')} checkpoint; "
                        "--do-rl starts from a colar one")
    else:
        colar = CoLaR(model, tok, ColarConfig(max_compression=cfg.compression)).to(dev)
    colar.train()
    out = check_destination(cfg.out)
    state_dir = out / "train-state"
    pos: dict[str, Any] = {"phase": 0, "epoch": 0, "batch": 0, "step": 0, "tokens": 0,
                           "seconds": 0.0}
    saved = resume(colar, model, cfg, state_dir, dev)
    if saved is not None:
        pos = saved
        log(f"resumed at epoch {pos['epoch']}, batch {pos['batch']}")
    prompts = [prompt_ids(p, tok, True) for p in problems]
    chains, answers = ([], []) if cfg.do_rl else colar_examples(
        problems, cot_steps(problems, cfg.cot_format, cfg.seed), tok, colar.marker_id)
    dev_set = _dev_set(cfg, data_dir, tok) if cfg.dev_task else None
    n_batches = -(-len(problems) // cfg.batch_size)
    total = cfg.epochs_per_stage * n_batches
    start_step = pos["step"]
    opt = torch.optim.AdamW([p for p in colar.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=0.01)  # CoLaR's optimiser settings (weight decay 0.01)
    if (state_dir / "optimizer.safetensors").exists():
        load_optimizer(opt, colar, state_dir, str(dev))
    losses: list[float] = []
    rewards: list[float] = []
    t0 = time.time()
    with progress_bar(True) as bar:
        task = bar.add_task("latent train (colar)", total=total, completed=pos["step"])
        while pos["epoch"] < cfg.epochs_per_stage:
            order = epoch_order(len(problems), cfg.seed, 0, pos["epoch"])
            while pos["batch"] < n_batches:
                idx = order[pos["batch"] * cfg.batch_size:(pos["batch"] + 1) * cfg.batch_size]
                rng = random.Random(f"colar:{cfg.seed}:{pos['step']}")
                tick = time.time()
                with autocast:
                    if cfg.do_rl:
                        stats = rl_step(colar, opt, [problems[i] for i in idx],
                                        [prompts[i] for i in idx], cfg.compression,
                                        cfg.group_size, seed=cfg.seed * 1_000_003 + pos["step"])
                        loss, tokens = stats["loss"], stats["tokens"]
                        rewards.append(stats["reward"])
                        what = (f"colar rl reward {sum(rewards[-20:]) / len(rewards[-20:]):.3f}"
                                f" latents {stats['latents']:.1f}")
                    else:
                        c = rng.randint(1, cfg.compression)
                        parts = colar.loss([prompts[i] for i in idx], [chains[i] for i in idx],
                                           [answers[i] for i in idx], c, rng)
                        opt.zero_grad(set_to_none=True)
                        parts["total"].backward()
                        torch.nn.utils.clip_grad_norm_(colar.parameters(), 1.0)
                        opt.step()
                        loss = parts["total"].item()
                        tokens = sum(len(prompts[i]) + len(chains[i]) + len(answers[i])
                                     for i in idx)
                        what = (f"colar c={c} (ce {parts['ce'].item():.3f}, latent "
                                f"{parts['latent'].item():.3f})")
                pos["seconds"] += time.time() - tick
                pos["tokens"] += tokens
                after_step(pos, losses, loss, bar, task, what, cfg.ckpt_every,
                           lambda: save_state(colar, opt, state_dir, cfg, pos))
            after_epoch(pos)
            if dev_set is not None:
                bar.update(task, description=f"epoch {pos['epoch']}: scoring dev questions")
                point = _dev_point(colar, dev_set, pos["epoch"], cfg.compression,
                                   recent_loss(losses))
                pos.setdefault("curve", []).append(point)
                log(f"epoch {pos['epoch']}: dev accuracy {point['dev_accuracy']:.3f} at "
                    f"c={cfg.compression} with {point['thoughts']:.2f} latents")
            save_state(colar, opt, state_dir, cfg, pos)
    if pos["step"] == start_step and (out / "loop.json").exists():
        return {"out": str(out), **read_meta(out)["train"]}
    meta = {"method": "colar", "variant": "colar", "base_model": cfg.model,
            "base_weights_sha256": base_sha,
            "init_method": init_meta["method"] if init_meta else None,
            "train": {**asdict(cfg), "task_sha256": source.sha256, "steps": pos["step"],
                      "final_loss": recent_loss(losses),
                      "train_s": round(time.time() - t0, 1),
                      "tokens_per_s": round(pos["tokens"] / max(pos["seconds"], 1e-9), 1),
                      "final_reward": (sum(rewards[-20:]) / len(rewards[-20:])
                                       if rewards else None),
                      "stage_curve": pos.get("curve", [])}}
    if cfg.do_rl and init_meta:  # the RL stage trains no chain: it keeps its init's
        meta["train"]["cot_format"] = init_meta.get("train", {}).get("cot_format", "-")
    save_loop(colar.eval(), out, meta, half=True, key="colar")
    return {"out": str(out), "steps": pos["step"], **meta["train"]}


def _dev_set(cfg: LatentTrainConfig, data_dir: str | None, tok) -> tuple[list, list]:
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    problems, _ = load_task(cfg.dev_task, data_dir=data_dir, limit=cfg.dev_limit)
    return problems, [prompt_ids(p, tok, True) for p in problems]


@torch.no_grad()
def _dev_point(colar: CoLaR, dev_set: tuple[list, list], epoch: int, c: int, loss: float
               ) -> dict[str, Any]:
    from attractor.grading.grade import correct_answers
    from attractor.latent.evaluate import eval_colar

    problems, prompts = dev_set
    colar.eval()
    res = eval_colar(colar, prompts, c, max_new_tokens=32)
    colar.train()
    ok = correct_answers(res["texts"], problems)
    return {"stage": epoch, "thoughts": round(res["iterations"], 2), "loss": round(loss, 4),
            "dev_accuracy": sum(ok) / len(ok),
            "state_norm": round(res["state_norm"], 3) if res["state_norm"] else None}
