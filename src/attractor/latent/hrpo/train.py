"""``attractor latent train --method hrpo|grpo``: GRPO on the outcome reward (correct = 1), with
HRPO's hybrid inputs (hrpo) or with the gates closed, a = 1 (grpo: plain GRPO on the same code
path, so the two differ only in the mixing).

As the reference trains (Yueeeeeeee/HRPO ``hrpo_gsm8k.py`` with its TRL ``grpo_trainer.py`` and
unsloth ``rl_replacements.py`` ``grpo_compute_loss``): per step ``--batch-size`` questions,
``--group-size`` samples each at ``--rl-temperature`` (HRPO: 0.5) with transformers' default
top-k of 50 (their ``GenerationConfig`` sets only the temperature), rewards 1 for a correct
answer; advantages (r - mean) / (std + 1e-4) within the group; one gradient step on the
per-token loss -(A * exp(log pi - sg(log pi)) - beta * (exp(ref - log pi) - (ref - log pi) - 1)),
averaged over each sample's tokens (its stop token included) then over samples. log pi is the
log-softmax of the *raw* logits (no temperature), replayed through the current gates; ref is
the model as training starts, on plain token ids (their reference is the base with adapters
disabled, fed ``input_ids``: no mixing). AdamW with betas (0.9, 0.99), weight decay 0.1 and
gradient clipping at 0.1, with HRPO's groups: the model at --lr, W_r and W_i at 1e-4, Lambda at
1e-3. We differ on purpose in two ways, said in docs/latent-reasoning.md: the model is fully fine-tuned (HRPO
trains LoRA adapters on 1.5B+ models; the embedded model is small enough not to need them), and
the learning rate is constant (theirs: cosine with warm-up). Written here rather than on TRL's
GRPOTrainer because TRL samples tokens through ``generate`` and replays token ids: it has no
hook to feed mixed embeddings in either.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import Any, Callable

import torch

from attractor.checks import check_destination
from attractor.config import SamplingConfig
from attractor.errors import DataError, UserError
from attractor.grading.grade import correct_answers
from attractor.latent.hrpo.model import HybridConfig, HybridModel, gate_param_groups, replay_logps
from attractor.latent.slr.train_config import LatentTrainConfig
from attractor.training.state import (epoch_order, load_optimizer, load_training_base,
                                          resume, save_state)


REF_TOP_K = 50          # transformers' GenerationConfig default, which their trainer keeps
ADAM_BETAS = (0.9, 0.99)  # hrpo_gsm8k.py: adam_beta1, adam_beta2
WEIGHT_DECAY = 0.1        # hrpo_gsm8k.py --weight_decay default
MAX_GRAD_NORM = 0.1       # hrpo_gsm8k.py --max_grad_norm default


def group_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """TRL's GRPO advantage: (r - group mean) / (group std + 1e-4), std unbiased."""
    r = rewards.view(-1, group)
    return ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)).view(-1)


def grpo_loss(logp: torch.Tensor, ref_logp: torch.Tensor | None, adv: torch.Tensor,
              valid: torch.Tensor, beta: float) -> torch.Tensor:
    """Their ``grpo_compute_loss``: per token -(exp(new - sg(new)) * A - beta * kl) with
    kl = exp(ref - new) - (ref - new) - 1, the mean over each sample's tokens, then over
    samples (no KL term when ``ref_logp`` is None)."""
    per_tok = torch.exp(logp - logp.detach()) * adv[:, None]
    if ref_logp is not None and beta > 0:
        d = ref_logp - logp
        per_tok = per_tok - beta * (torch.exp(d) - d - 1.0)
    per_tok = -per_tok
    return ((per_tok * valid).sum(-1) / valid.sum(-1).clamp(min=1)).mean()


def grpo_step(hm: HybridModel, ref: HybridModel | None, opt: torch.optim.Optimizer, problems,
              prompts: list[list[int]], group: int, temperature: float, kl: float, seed: int,
              max_new_tokens: int = 48) -> dict[str, float]:
    """One GRPO step: sample, reward, replay, update. Returns reward, loss, tokens, gate share."""
    reps = [p for p in prompts for _ in range(group)]
    probs = [p for p in problems for _ in range(group)]
    hm.eval()
    ro = hm.generate(reps, SamplingConfig(samples=1, temperature=temperature, top_k=REF_TOP_K,
                                          max_new_tokens=max_new_tokens),
                     seeds=[seed * 100_003 + k for k in range(len(reps))])
    rewards = torch.tensor([float(x) for x in correct_answers(ro.texts, probs)])
    adv = group_advantages(rewards, group)
    eos = hm.tok.eos_token_id
    comps = [t + ([eos] if fin and isinstance(eos, int) else []) for t, fin in
             zip(ro.tokens, ro.finished)]
    keep = [i for i, c in enumerate(comps) if c]
    hm.train()
    dev = next(hm.parameters()).device
    k_prompts, k_comps = [reps[i] for i in keep], [comps[i] for i in keep]
    # the loss reads the raw logits (temperature 1), as their grpo_compute_loss does
    logp, valid = replay_logps(hm.base, hm.gate, k_prompts, k_comps,
                               [ro.mixes[i] for i in keep], [ro.thinking[i] for i in keep], 1.0)
    ref_logp = None
    if kl > 0 and ref is not None:
        with torch.no_grad():   # plain token ids through the initial model: no mixing
            ref_logp, _ = replay_logps(ref.base, ref.gate, k_prompts, k_comps,
                                       [ro.mixes[i] for i in keep],
                                       [[False] * len(ro.thinking[i]) for i in keep], 1.0)
    loss = grpo_loss(logp, ref_logp, adv[keep].to(dev), valid, kl)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(hm.parameters()), MAX_GRAD_NORM)
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
    out = check_destination(cfg.out)
    state_dir = out / "train-state"
    pos: dict[str, Any] = {"step": 0, "tokens": 0, "seconds": 0.0, "rewards": []}
    saved = resume(hm, model, cfg, state_dir, dev)
    if saved is not None:
        pos = saved
        log(f"resumed at step {pos['step']} of {cfg.rl_steps}")
    opt = torch.optim.AdamW(gate_param_groups(hm.base, hm.gate, cfg.lr), betas=ADAM_BETAS,
                            weight_decay=WEIGHT_DECAY)
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
