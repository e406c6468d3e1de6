"""``attractor latent train --method hrpo|grpo``: GRPO on the outcome reward (correct = 1), with
HRPO's hybrid inputs (hrpo) or with the gates closed, a = 1 (grpo: plain GRPO on the same code
path, so the two differ only in the mixing).

Per step: ``--batch-size`` questions, ``--group-size`` samples each at ``--rl-temperature``
(HRPO: 0.5), rewards 1 for a correct answer; advantages (r - mean) / (std + 1e-4) within the
group (TRL's GRPO, as HRPO runs it); one gradient step on the per-token loss
-A * log pi + kl * (exp(ref - log pi) - (ref - log pi) - 1), averaged over each sample's tokens
then over samples (GRPO's original normalisation, TRL's "grpo" loss), log pi replayed through
the current gates. AdamW with HRPO's groups: the model at --lr, W_r and W_i at 1e-4, Lambda at
1e-3. The model is fully fine-tuned (HRPO trains LoRA adapters on 1.5B+ models; the embedded
model is small enough not to need them). The reference for the KL term is the model and gate as
training starts. Written here rather than on TRL's GRPOTrainer because TRL samples tokens
through ``generate`` and replays token ids: it has no hook to feed mixed embeddings in either.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from attractor.config import SamplingConfig
from attractor.errors import DataError, UserError
from attractor.grading.grade import correct_answers
from attractor.latent.hrpo import HybridConfig, HybridModel, gate_param_groups, replay_logps
from attractor.latent.train_config import LatentTrainConfig
from attractor.latent.train_state import (epoch_order, load_optimizer, load_training_base,
                                          resume, save_state)


def grpo_step(hm: HybridModel, ref: HybridModel | None, opt: torch.optim.Optimizer, problems,
              prompts: list[list[int]], group: int, temperature: float, kl: float, seed: int,
              max_new_tokens: int = 48) -> dict[str, float]:
    """One GRPO step: sample, reward, replay, update. Returns reward, loss, tokens, gate share."""
    reps = [p for p in prompts for _ in range(group)]
    probs = [p for p in problems for _ in range(group)]
    hm.eval()
    ro = hm.generate(reps, SamplingConfig(samples=1, temperature=temperature,
                                          max_new_tokens=max_new_tokens),
                     seeds=[seed * 100_003 + k for k in range(len(reps))])
    rewards = torch.tensor([float(x) for x in correct_answers(ro.texts, probs)])
    r = rewards.view(-1, group)
    adv = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)).view(-1)
    eos = hm.tok.eos_token_id
    comps = [t + ([eos] if fin and isinstance(eos, int) else []) for t, fin in
             zip(ro.tokens, ro.finished)]
    keep = [i for i, c in enumerate(comps) if c]
    hm.train()
    dev = next(hm.parameters()).device
    logp, valid = replay_logps(hm.base, hm.gate, [reps[i] for i in keep], [comps[i] for i in keep],
                               [ro.mixes[i] for i in keep], [ro.thinking[i] for i in keep],
                               temperature)
    a = adv[keep].to(dev)[:, None]
    per_tok = -(torch.exp(logp - logp.detach()) * a)
    if kl > 0 and ref is not None:
        with torch.no_grad():
            ref_logp, _ = replay_logps(ref.base, ref.gate, [reps[i] for i in keep],
                                       [comps[i] for i in keep], [ro.mixes[i] for i in keep],
                                       [ro.thinking[i] for i in keep], temperature)
        d = ref_logp - logp
        per_tok = per_tok + kl * (torch.exp(d) - d - 1)
    loss = ((per_tok * valid).sum(-1) / valid.sum(-1).clamp(min=1)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(hm.parameters()), 1.0)
    opt.step()
    return {"reward": float(rewards.mean()), "loss": loss.item(),
            "tokens": sum(len(reps[i]) + len(comps[i]) for i in keep),
            "gate_share": ro.gate_share}


def train_hrpo(cfg: LatentTrainConfig, log: Callable[[str], None] = print,
               data_dir: str | None = None) -> dict[str, Any]:
    """Train (or resume) an hrpo or grpo model; returns a summary."""
    from attractor.latent.checkpoint import read_meta, save_loop
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import progress_bar

    torch.set_num_threads(cfg.threads)
    problems, source = load_task(cfg.task, data_dir=data_dir)
    missing = [p.id for p in problems if not str(p.gold or "").strip()]
    if missing:
        raise DataError(f"{cfg.task}: {len(missing)} questions have no gold answer (first: "
                        f"{missing[0]}); the outcome reward is not defined without one")
    tb = load_training_base(cfg)
    model, tok, dev = tb.model, tb.tok, tb.device
    if tb.init_meta is not None and tb.init_meta.get("method") in ("colar", "hrpo", "grpo"):
        raise UserError(f"{cfg.init}: a {tb.init_meta['method']} checkpoint; --method "
                        f"{cfg.method} starts from a base model or a cot checkpoint")
    torch.manual_seed(cfg.seed)
    hm = HybridModel(model, tok, HybridConfig(gated=cfg.method == "hrpo")).to(dev)
    ref = copy.deepcopy(hm).eval() if cfg.kl > 0 else None
    if ref is not None:
        ref.requires_grad_(False)
    out = Path(cfg.out)
    state_dir = out / "train-state"
    pos: dict[str, Any] = {"step": 0, "tokens": 0, "seconds": 0.0, "rewards": []}
    saved = resume(hm, model, cfg, state_dir, dev)
    if saved is not None:
        pos = saved
        log(f"resumed at step {pos['step']} of {cfg.rl_steps}")
    opt = torch.optim.AdamW(gate_param_groups(hm.base, hm.gate, cfg.lr), weight_decay=0.0)
    if (state_dir / "optimizer.safetensors").exists():
        load_optimizer(opt, hm, state_dir, str(dev))
    prompts = [prompt_ids(p, tok, True) for p in problems]
    start = pos["step"]
    n = len(problems)
    per_epoch = max(1, n // cfg.batch_size)
    t0 = time.time()
    with progress_bar(True) as bar:
        task = bar.add_task(f"latent train ({cfg.method})", total=cfg.rl_steps,
                            completed=pos["step"])
        while pos["step"] < cfg.rl_steps:
            epoch, b = divmod(pos["step"], per_epoch)
            order = epoch_order(n, cfg.seed, 0, epoch)
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            tick = time.time()
            stats = grpo_step(hm, ref, opt, [problems[i] for i in idx], [prompts[i] for i in idx],
                              cfg.group_size, cfg.rl_temperature, cfg.kl,
                              seed=cfg.seed * 1_000_003 + pos["step"])
            pos["seconds"] += time.time() - tick
            pos["tokens"] += stats["tokens"]
            pos["rewards"].append(stats["reward"])
            pos["step"] += 1
            recent = pos["rewards"][-20:]
            share = stats["gate_share"]
            bar.update(task, advance=1, description=(
                f"{cfg.method} reward {sum(recent) / len(recent):.3f}"
                + (f" a {share:.4f}" if share == share else "")))
            if pos["step"] % cfg.ckpt_every == 0 or pos["step"] == cfg.rl_steps:
                save_state(hm, opt, state_dir, cfg, pos)
    if pos["step"] == start and (out / "loop.json").exists():
        return {"out": str(out), **read_meta(out)["train"]}
    rewards = pos["rewards"]
    meta = {"method": cfg.method, "variant": cfg.method, "base_model": cfg.model,
            "base_weights_sha256": tb.base_sha,
            "init_method": tb.init_meta["method"] if tb.init_meta else None,
            "train": {**asdict(cfg), "task_sha256": source.sha256, "steps": pos["step"],
                      "train_s": round(time.time() - t0, 1),
                      "tokens_per_s": round(pos["tokens"] / max(pos["seconds"], 1e-9), 1),
                      "first_reward": sum(rewards[:20]) / max(1, len(rewards[:20])),
                      "final_reward": sum(rewards[-20:]) / max(1, len(rewards[-20:]))}}
    if tb.init_meta:
        meta["train"]["cot_format"] = tb.init_meta.get("train", {}).get("cot_format", "-")
    save_loop(hm.eval(), out, meta, half=True, key="hybrid")
    return {"out": str(out), "steps": pos["step"], **meta["train"]}
