"""CoLaR's reinforcement stage (``attractor latent train --method colar --do-rl``): GRPO on the
sampled latents and the sampled answer, as CoLaR's ``rl_training_step`` and ``src/modules/grpo.py``
(itself from open-thought/tiny-grpo) do it.

Per step: each question is answered ``group`` times at compression c with latents drawn from the
head's Normal (temperature 1), the end of thinking and the answer sampled from the LM head
(temperature 1); the reward is correctness; advantages are normalised within each question's
group, (r - mean) / (std + 1e-8), with the unbiased std as ``torch.std``; the old log-probabilities
are those of the rollout policy. The loss, over shuffled minibatches of ``exp_batch`` samples, is
PPO's clipped surrogate (clip 0.2) on each latent's log-probability (the Normal's, averaged over
dimensions, of the latent over the embedding std) and on each answer token's (the marker that ends
thinking first), summed per sample and divided by 32 (their ``masked_sum``, with
``average_per_token_loss: False``), averaged over the minibatch, latents plus answer. No KL term,
no reference model (their config). Written here because TRL's GRPOTrainer samples tokens only:
it has no continuous actions to score.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from attractor.latent.colar.model import CoLaR
from attractor.latent.slr.loop import decoder_forward


@dataclass
class LatentRollout:
    """One group rollout: per sample, its question ids, latents, answer ids, reward, advantage."""

    questions: list[list[int]]
    fed: list[torch.Tensor]
    answers: list[list[int]]
    rewards: torch.Tensor
    advantages: torch.Tensor
    latents: list[int]


def group_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """(r - mean) / (std + 1e-8) within each consecutive group of ``group`` rewards."""
    r = rewards.view(-1, group)
    return ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-8)).view(-1)


@torch.no_grad()
def rollout(colar: CoLaR, problems, prompts: list[list[int]], c: int, group: int, seed: int,
            max_new_tokens: int) -> LatentRollout:
    """``group`` sampled answers per question (latents, end of thinking and answer sampled)."""
    from attractor.grading.grade import correct_answers

    reps = [p for p in prompts for _ in range(group)]
    probs = [p for p in problems for _ in range(group)]
    out = colar.generate(reps, c, max_new_tokens=max_new_tokens, latent_temperature=1.0,
                         eol_temperature=1.0, answer_temperature=1.0,
                         seeds=[seed * 100_003 + k for k in range(len(reps))])
    rewards = torch.tensor([float(x) for x in correct_answers(out.texts, probs)])
    eos = colar.tok.eos_token_id
    answers = [[colar.marker_id] + ids + ([eos] if stop and isinstance(eos, int) else [])
               for ids, stop in zip(out.answer_ids, out.stopped)]
    return LatentRollout([colar.question_ids(p, c) for p in reps], [f.detach() for f in out.fed],
                   answers, rewards, group_advantages(rewards, group), out.latents)


def log_probs(colar: CoLaR, questions: list[list[int]], fed: list[torch.Tensor],
              answers: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor]:
    """Per sample, the log-probability of each fed latent under the head (mean over
    dimensions, of latent / embedding std) and of each answer token under the LM head, teacher
    forced in one pass: (latent log-probs, their mask, answer log-probs, their mask), padded."""
    emb = colar.base.get_input_embeddings()
    dev = colar.device
    rows = [torch.cat([emb(torch.tensor(q, device=dev)), f.to(dev),
                       emb(torch.tensor(a, device=dev))]) for q, f, a in zip(questions, fed, answers)]
    b, width, d = len(rows), max(len(r) for r in rows), rows[0].shape[-1]
    embeds = torch.zeros(b, width, d, device=dev, dtype=rows[0].dtype)
    mask = torch.zeros(b, width, dtype=torch.long, device=dev)
    for i, r in enumerate(rows):
        embeds[i, :len(r)], mask[i, :len(r)] = r, 1
    hs, _ = decoder_forward(colar.base, embeds, mask, None)
    n_lat, n_ans = max(len(f) for f in fed), max(len(a) for a in answers)
    lat_lp = torch.zeros(b, max(n_lat, 1), device=dev)
    lat_mask = torch.zeros_like(lat_lp)
    ans_lp = torch.zeros(b, n_ans, device=dev)
    ans_mask = torch.zeros_like(ans_lp)
    for i, (q, f, a) in enumerate(zip(questions, fed, answers)):
        start = len(q) - 1  # the marker's state predicts the first latent
        if len(f):
            dist = colar.head(hs[i, start:start + len(f)].float())
            lat_lp[i, :len(f)] = dist.log_prob(f.float() / colar.cfg.embeds_std).mean(-1)
            lat_mask[i, :len(f)] = 1
        logits = colar.base.get_output_embeddings()(hs[i, start + len(f):start + len(f) + len(a)])
        tok = torch.tensor(a, device=dev)
        ans_lp[i, :len(a)] = logits.float().log_softmax(-1).gather(-1, tok[:, None])[:, 0]
        ans_mask[i, :len(a)] = 1
    return lat_lp, lat_mask, ans_lp, ans_mask


def clipped_loss(new: torch.Tensor, old: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor,
                 clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate per position, summed per sample over ``mask`` / 32, averaged."""
    ratio = (new - old).exp()
    a = adv[:, None]
    loss = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    return ((loss * mask).sum(-1) / 32).mean()


def rl_step(colar: CoLaR, opt: torch.optim.Optimizer, problems, prompts: list[list[int]],
            c: int, group: int, seed: int, max_new_tokens: int = 32, exp_batch: int = 8
            ) -> dict[str, float]:
    """One GRPO step on a batch of questions: rollout, then one pass of minibatch updates."""
    colar.eval()
    ro = rollout(colar, problems, prompts, c, group, seed, max_new_tokens)
    with torch.no_grad():
        old = log_probs(colar, ro.questions, ro.fed, ro.answers)
    colar.train()
    order = list(range(len(ro.questions)))
    random.Random(seed).shuffle(order)
    losses = []
    for k in range(0, len(order), exp_batch):
        idx = order[k:k + exp_batch]
        new = log_probs(colar, [ro.questions[i] for i in idx], [ro.fed[i] for i in idx],
                        [ro.answers[i] for i in idx])
        adv = ro.advantages[idx].to(colar.device)
        ol = [t[idx][:, :n.shape[1]] for t, n in zip(old, new)]
        loss = (clipped_loss(new[0], ol[0], new[1], adv)
                + clipped_loss(new[2], ol[2], new[3], adv))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(colar.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    tokens = sum(len(q) + len(f) + len(a) for q, f, a in zip(ro.questions, ro.fed, ro.answers))
    return {"loss": sum(losses) / len(losses), "reward": float(ro.rewards.mean()),
            "latents": sum(ro.latents) / len(ro.latents), "tokens": tokens}
