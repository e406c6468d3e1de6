"""HRPO's hybrid inputs: the gate equals the paper's formula (and their code's Lambda
initialisation) written out here; closing the gates (a = 1) samples exactly as the hf engine
does; the replay re-mixes through the current gates; the trainer runs, saves a checkpoint that
`attractor latent eval` scores, and refuses other methods' checkpoints."""
import math

import pytest

import torch

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine
from attractor.latent.hrpo.model import (HybridConfig, HybridGate, HybridModel, mixed_embedding,
                                   replay_logps)
from attractor.models.load import load
from attractor.tasks.loaders import load_task
from attractor.tasks.prompts import prompt_ids
from helpers import attractor

TRAIN = ["--task", "synthetic:prosqa:hops=3-4,n=8,seed=11", "--rl-steps", "2", "--batch-size",
         "2", "--group-size", "2", "--ckpt-every", "1"]


def test_gate_equals_the_papers_formula_and_starts_near_one():
    torch.manual_seed(0)
    g = HybridGate(16)
    x, h = torch.randn(5, 16), torch.randn(5, 16)
    e, a = g(x, h)
    r = 1 / (1 + torch.exp(-(x @ g.gate_r.weight.T + g.gate_r.bias)))
    i = 1 / (1 + torch.exp(-(x @ g.gate_i.weight.T + g.gate_i.bias)))
    want_a = torch.exp(-8.0 * torch.log1p(torch.exp(-g.Lambda)) * r)
    assert torch.allclose(a, want_a, atol=1e-6)
    assert torch.allclose(e, want_a * x + torch.sqrt(1 - want_a ** 2 + 1e-8) * (i * h), atol=1e-6)
    # their reset_lambda_parameters: a at r = 1 is uniform in [0.99, 0.999]
    at_one = torch.exp(-8.0 * torch.log1p(torch.exp(-g.Lambda)))
    assert 0.99 - 1e-6 <= at_one.min() and at_one.max() <= 0.999 + 1e-6
    assert 0.99 < a.min() and a.max() < 1


def test_mixed_embedding_is_the_probability_weighted_mix_over_the_l2_norm_of_p():
    w = torch.randn(7, 3)
    p = torch.softmax(torch.randn(2, 7), -1)
    want = torch.stack([sum(p[b, v] * w[v] for v in range(7)) / math.sqrt(sum(p[b] ** 2))
                        for b in range(2)])
    assert torch.allclose(mixed_embedding(p, w), want, atol=1e-5)


def test_closed_gates_sample_bit_for_bit_as_the_hf_engine():
    model, tok = load("tiny", dtype="float32", device="cpu")
    closed = HybridModel(model, tok, HybridConfig(gated=False))
    open_ = HybridModel(model, tok, HybridConfig(gated=True))
    engine = HFEngine(model, tok)
    problems, _ = load_task("synthetic:prosqa:hops=7-8,n=3,seed=5")
    differ = 0
    for p in problems:
        ids = prompt_ids(p, tok)
        for seed in (0, 3):
            cfg = SamplingConfig(samples=1, temperature=1.0, max_new_tokens=40, seed=seed)
            plain = engine.generate([p.id], [ids], cfg)[0][0].completion_token_ids
            assert closed.generate([ids], cfg).tokens[0] == plain
            hybrid = open_.generate([ids], cfg)
            assert 0.99 < hybrid.gate_share < 1
            differ += hybrid.tokens[0] != plain
            # the marker ends the mixing: no fed token after '###' is mixed
            text_ids = hybrid.tokens[0]
            fed_after = [th for k, th in enumerate(hybrid.thinking[0])
                         if "###" in tok.decode(text_ids[:k + 1])]
            assert not any(fed_after)
    assert differ < 6  # a near 1 at the start: mostly the same tokens
    # a GRPO group (one prompt repeated) prefills once and repeats the cache, as the engine does
    ids = prompt_ids(problems[0], tok)
    cfg = SamplingConfig(samples=4, temperature=1.0, max_new_tokens=40, seed=11)
    plain = [r.completion_token_ids for r in engine.generate(["q"], [ids], cfg)[0]]
    assert closed.generate([ids] * 4, cfg).tokens == plain


def test_replay_reproduces_the_sampling_distribution_and_reaches_the_gates():
    model, tok = load("tiny", dtype="float32", device="cpu")
    hm = HybridModel(model, tok, HybridConfig(gated=True))
    p = load_task("synthetic:prosqa:hops=3-4,n=1,seed=2")[0][0]
    ids = prompt_ids(p, tok)
    cfg = SamplingConfig(samples=1, temperature=0.5, max_new_tokens=30, seed=1)
    ro = hm.generate([ids], cfg)
    comp = ro.tokens[0] + [tok.eos_token_id]
    assert ro.finished[0] and any(ro.thinking[0])
    lp, valid = replay_logps(model, hm.gate, [ids], [comp], ro.mixes, ro.thinking, 0.5)
    # one teacher-forced pass over the re-mixed inputs gives the log-probabilities the sampler
    # drew each token with, step by step on its cache
    assert valid.sum() == len(comp)
    assert torch.allclose(lp[0], torch.tensor(ro.logprobs[0]), atol=1e-4)
    lp.sum().backward()
    assert hm.gate.gate_r.weight.grad.abs().sum() > 0 and hm.gate.Lambda.grad.abs().sum() > 0


def test_hrpo_and_grpo_train_save_and_score(tmp_path):
    for method in ("hrpo", "grpo"):
        out = tmp_path / method
        proc = attractor("latent", "train", "--method", method, *TRAIN, "--out", str(out))
        assert "reward" in proc.stdout
        assert (out / "loop.json").exists()
    proc = attractor("latent", "eval", str(tmp_path / "hrpo"), str(tmp_path / "grpo"), "--task",
                     "synthetic:prosqa:hops=3-4,n=4,seed=99", "--soft-thoughts", "0")
    rows = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith(("│ hrpo", "│ grpo"))]
    assert len(rows) == 2, proc.stdout


def test_a_hybrid_checkpoint_is_refused_where_a_loop_is_needed(tmp_path):
    out = tmp_path / "h"
    attractor("latent", "train", "--method", "hrpo", *TRAIN, "--rl-steps", "1", "--out", str(out))
    proc = attractor("latent", "inspect", str(out), "--task",
                     "synthetic:prosqa:hops=3-4,n=2,seed=9", "--out", str(tmp_path / "i"),
                     check=False)
    assert proc.returncode == 2 and "an hrpo checkpoint" in proc.stderr


def _their_grpo_compute_loss(old_logits, new_logits, input_ids, mask, beta, advantages):
    """unsloth's ``grpo_compute_loss`` as HRPO runs it (rl_replacements.py), written out."""
    old_logits, new_logits = old_logits.float(), new_logits.float()
    ids = input_ids.unsqueeze(-1)
    old = torch.gather(old_logits, -1, ids).squeeze(-1) - torch.logsumexp(old_logits, dim=-1)
    new = torch.gather(new_logits, -1, ids).squeeze(-1) - torch.logsumexp(new_logits, dim=-1)
    kl_i = torch.exp(old - new) - (old - new) - 1.0
    loss_i = torch.exp(new - new.detach()) * advantages.unsqueeze(1)
    loss_i = -(loss_i - beta * kl_i)
    mask = mask.float()
    return ((loss_i * mask).sum(1) / mask.sum(1)).mean()


def test_grpo_loss_and_advantages_equal_the_reference():
    from attractor.latent.hrpo.train import group_advantages, grpo_loss

    g = torch.Generator().manual_seed(0)
    b, n, v = 6, 5, 11
    old = torch.randn(b, n, v, generator=g)
    new = torch.randn(b, n, v, generator=g, requires_grad=True)
    ids = torch.randint(0, v, (b, n), generator=g)
    mask = torch.ones(b, n)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1])
    adv = group_advantages(rewards, 3)
    r = rewards.view(-1, 3)       # TRL's grpo_trainer: (r - mean) / (std + 1e-4), std unbiased
    want_adv = (rewards - r.mean(1).repeat_interleave(3)) / (r.std(1).repeat_interleave(3) + 1e-4)
    torch.testing.assert_close(adv, want_adv)
    for beta in (0.0, 0.005, 0.5):
        want = _their_grpo_compute_loss(old, new, ids, mask, beta, adv)
        lp = new.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        ref = old.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        got = grpo_loss(lp, ref, adv, mask, beta)
        torch.testing.assert_close(got, want)
        gw, = torch.autograd.grad(want, new)
        gg, = torch.autograd.grad(grpo_loss(new.log_softmax(-1).gather(-1, ids[..., None])[..., 0],
                                            ref, adv, mask, beta), new)
        torch.testing.assert_close(gg, gw)


def test_a_grpo_step_follows_the_reference_trainer():
    """One step of the gates-closed arm against the reference written out: raw logits (no
    temperature) of plain forwards, the KL to the initial model on token ids, grads clipped
    at 0.1, AdamW (0.9, 0.99) with weight decay 0.1, and top-k 50 sampling."""
    import copy

    from attractor.latent.hrpo.model import gate_param_groups
    from attractor.latent.hrpo.train import grpo_step

    model, tok = load("tiny", dtype="float32", device="cpu")
    hm = HybridModel(model, tok, HybridConfig(gated=False))
    ref = copy.deepcopy(hm).eval()
    probs, _ = load_task("synthetic:prosqa:hops=3-4,n=2,seed=4")
    prompts = [prompt_ids(p, tok) for p in probs]
    opt = torch.optim.AdamW(gate_param_groups(hm.base, hm.gate, 1e-3), betas=(0.9, 0.99),
                            weight_decay=0.1)
    before = copy.deepcopy(hm.base)
    # the same rollouts as the step draws (same seeds, top-k 50), then their loss by hand
    reps = [p for p in prompts for _ in range(4)]
    ro = hm.generate(reps, SamplingConfig(samples=1, temperature=0.5, top_k=50,
                                          max_new_tokens=48),
                     seeds=[7 * 100_003 + k for k in range(len(reps))])
    stats = grpo_step(hm, ref, opt, probs, prompts, 4, 0.5, 0.3, seed=7)
    from attractor.grading.grade import correct_answers

    rewards = torch.tensor([float(x) for x in correct_answers(ro.texts, [p for p in probs
                                                                          for _ in range(4)])])
    assert stats["reward"] == float(rewards.mean())
    assert 0 < rewards.sum() < len(rewards), "the slice needs a mix of rewards"
    r = rewards.view(-1, 4)
    adv = (rewards - r.mean(1).repeat_interleave(4)) / (r.std(1).repeat_interleave(4) + 1e-4)
    oracle = copy.deepcopy(before).train()
    losses = []
    for k, (p, t, fin) in enumerate(zip(reps, ro.tokens, ro.finished)):
        c = t + ([tok.eos_token_id] if fin else [])
        x = torch.tensor([p + c])
        new_logits = oracle(input_ids=x).logits[:, len(p) - 1:-1]
        with torch.no_grad():
            old_logits = before(input_ids=x).logits[:, len(p) - 1:-1]
        losses.append(_their_grpo_compute_loss(old_logits, new_logits, torch.tensor([c]),
                                               torch.ones(1, len(c)), 0.3, adv[k:k + 1]))
    loss = torch.stack(losses).mean()
    assert stats["loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(oracle.parameters()), 0.1)
    total = 0.0
    for (name, a), b in zip(hm.base.named_parameters(), oracle.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6, msg=name)
        total += float(b.grad.norm()) ** 2
    assert total ** 0.5 == pytest.approx(0.1, rel=1e-3)    # clipped at their max_grad_norm
