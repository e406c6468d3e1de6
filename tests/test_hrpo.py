"""HRPO's hybrid inputs: the gate equals the paper's formula (and their code's Lambda
initialisation) written out here; closing the gates (a = 1) samples exactly as the hf engine
does; the replay re-mixes through the current gates; the trainer runs, saves a checkpoint that
`attractor latent eval` scores, and refuses other methods' checkpoints."""
import math

import torch

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine
from attractor.latent.hrpo import (HybridConfig, HybridGate, HybridModel, mixed_embedding,
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
