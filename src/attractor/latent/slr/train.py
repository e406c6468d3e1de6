"""``attractor latent train``: the Coconut curriculum for a :class:`LatentLoop`.

Stage 0 trains on the full CoT; stage k replaces the first k steps with k * c thoughts; the last
stage makes every step latent. Each stage runs ``epochs_per_stage`` passes over the training
questions in a seeded order, and the optimiser is reset at each stage switch (as Coconut does).
The base model and the stabilisers train together. ``--first-stage 1`` skips stage 0 when the
base already writes this chain of thought (the tiny model on ProsQA with ``--cot-format
backward-proof``, or a model started ``--init`` from a ``cot`` checkpoint). The baselines train
on the same data: ``--method cot`` runs stage 0 only, ``--method no-cot`` the answer alone.
A checkpoint (model, optimiser, position in the curriculum) is written every ``ckpt_every``
steps as safetensors; running the same command again resumes from it.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict
from typing import Any, Callable

import torch

from attractor.checks import check_destination
from attractor.latent.checkpoint import read_meta, save_loop
from attractor.latent.slr.config import variant_name
from attractor.latent.slr.curriculum import (build_example, check_steps, cot_steps, stage_of,
                                         thoughts_at)
from attractor.latent.slr.loop import LatentLoop
from attractor.latent.slr.train_config import LatentTrainConfig
from attractor.training.steps import after_epoch, after_step, recent_loss
from attractor.training.state import (epoch_order, load_optimizer, load_training_base,
                                          resume, save_state)


def train_latent(cfg: LatentTrainConfig, log: Callable[[str], None] = print,
                 data_dir: str | None = None) -> dict[str, Any]:
    """Train (or resume) one loop variant (or, with ``--method colar``, a CoLaR model: see
    :mod:`attractor.latent.colar.train`); returns a summary."""
    if cfg.method == "colar":
        from attractor.latent.colar.train import train_colar

        return train_colar(cfg, log=log, data_dir=data_dir)
    if cfg.method in ("hrpo", "grpo"):
        from attractor.latent.hrpo.train import train_hrpo

        return train_hrpo(cfg, log=log, data_dir=data_dir)
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import progress_bar

    torch.set_num_threads(cfg.threads)
    problems, source = load_task(cfg.task, data_dir=data_dir)
    check_steps(problems, cfg.task)
    steps = cot_steps(problems, cfg.cot_format, cfg.seed)
    loop_cfg = cfg.loop_config()
    tb = load_training_base(cfg)
    model, tok, dev, autocast = tb.model, tb.tok, tb.device, tb.autocast
    base_sha, init_meta = tb.base_sha, tb.init_meta
    torch.manual_seed(cfg.seed)
    loop = LatentLoop(model, tok, loop_cfg)
    loop.train()
    out = check_destination(cfg.out)
    state_dir = out / "train-state"
    plan = cfg.schedule()
    pos = {"phase": 0, "epoch": 0, "batch": 0, "step": 0}
    saved = resume(loop, loop.base, cfg, state_dir, dev)
    if saved is not None:
        pos = saved
        log(f"resumed at phase {pos['phase']} of {len(plan)}, epoch {pos['epoch']}, "
            f"batch {pos['batch']}")
    prompts = [prompt_ids(p, tok, True) for p in problems]
    dev_set = _dev_set(cfg, data_dir, tok) if cfg.dev_task else None
    n_batches = -(-len(problems) // cfg.batch_size)
    total = len(plan) * cfg.epochs_per_stage * n_batches
    start_step = pos["step"]
    opt = _optimiser(loop, cfg)
    if (state_dir / "optimizer.safetensors").exists():
        load_optimizer(opt, loop, state_dir, str(loop.device))
    losses: list[float] = []
    t0 = time.time()
    with progress_bar(True) as bar:
        task = bar.add_task(f"latent train ({cfg.method})", total=total, completed=pos["step"])
        while pos["phase"] < len(plan):
            stage = plan[pos["phase"]]
            order = epoch_order(len(problems), cfg.seed, stage, pos["epoch"])
            while pos["batch"] < n_batches:
                idx = order[pos["batch"] * cfg.batch_size:(pos["batch"] + 1) * cfg.batch_size]
                rng = random.Random(f"mix:{cfg.seed}:{pos['step']}")
                exs = [build_example(steps[i], problems[i].gold, prompts[i], tok,
                                     stage_of(stage, cfg.mix, rng), cfg.stages,
                                     cfg.thoughts_per_step, lens=cfg.thought_loss > 0)
                       for i in idx]
                with autocast:
                    loss = loop.loss([e.prompt for e in exs], [e.thoughts for e in exs],
                                     [e.target for e in exs], [e.lens for e in exs],
                                     cfg.thought_loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loop.parameters(), 1.0)
                opt.step()
                after_step(pos, losses, loss.item(), bar, task, f"stage {stage}", cfg.ckpt_every,
                           lambda: save_state(loop, opt, state_dir, cfg, pos))
            after_epoch(pos)
            if pos["epoch"] >= cfg.epochs_per_stage:
                if dev_set is not None:
                    bar.update(task, description=f"stage {stage}: scoring "
                                                 f"{len(dev_set[0])} dev questions")
                    point = _stage_point(loop, dev_set, stage, cfg, recent_loss(losses))
                    pos.setdefault("curve", []).append(point)
                    log(f"stage {stage}: dev accuracy {point['dev_accuracy']:.3f} with "
                        f"{point['thoughts']} thoughts (loss {point['loss']:.3f})")
                pos["epoch"] = 0
                pos["phase"] += 1
                opt = _optimiser(loop, cfg)  # Coconut resets the optimiser at each stage
            save_state(loop, opt, state_dir, cfg, pos)
    if pos["step"] == start_step and (out / "loop.json").exists():
        # already finished: keep the record it wrote (this call trained nothing to report)
        return {"out": str(out), **read_meta(out)["train"]}
    meta = {"method": cfg.method, "variant": variant_name(cfg.method, cfg.loop),
            "base_model": cfg.model, "base_weights_sha256": base_sha,
            "init_method": init_meta["method"] if init_meta else None,
            "train": {**asdict(cfg), "task_sha256": source.sha256, "steps": pos["step"],
                      "final_loss": recent_loss(losses),
                      "train_s": round(time.time() - t0, 1),
                      "stage_curve": pos.get("curve", [])}}
    save_loop(loop.eval(), out, meta, half=True)
    return {"out": str(out), "steps": pos["step"], **meta["train"]}


def _dev_set(cfg: LatentTrainConfig, data_dir: str | None, tok) -> tuple[list, list]:
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    problems, _ = load_task(cfg.dev_task, data_dir=data_dir, limit=cfg.dev_limit)
    return problems, [prompt_ids(p, tok, True) for p in problems]


@torch.no_grad()
def _stage_point(loop: LatentLoop, dev_set: tuple[list, list], stage: int,
                 cfg: LatentTrainConfig, loss: float) -> dict[str, Any]:
    """Greedy dev accuracy with ``stage``'s thought count (``k * c``, also for a proof shorter
    than ``k``), then the model's own text."""
    from attractor.grading.grade import correct_answers
    from attractor.latent.evaluate import eval_loop

    problems, prompts = dev_set
    thoughts = thoughts_at(stage, cfg.stages, cfg.thoughts_per_step)
    loop.eval()
    res = eval_loop(loop, prompts, max_new_tokens=96, n_thoughts=thoughts)
    loop.train()
    ok = correct_answers(res["texts"], problems)
    norm = res["state_norm"]
    return {"stage": stage, "thoughts": thoughts, "loss": round(loss, 4),
            "dev_accuracy": sum(ok) / len(ok),
            "state_norm": round(norm, 3) if norm is not None else None}


def _optimiser(loop: LatentLoop, cfg: LatentTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in loop.parameters() if p.requires_grad], lr=cfg.lr,
                             weight_decay=0.0)
