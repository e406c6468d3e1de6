import torch

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine, filter_logits

PROMPTS = ["Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?\n",
           "Every a is b. Is Bob a x?\n", "Sam is a lempus. Every lempus is a brimpus. Is Sam a brimpus or dumpus?\n"]


def _engine(random_model, rows=256):
    model, tok = random_model
    return HFEngine(model, tok, max_batch_rows=rows), [tok(p)["input_ids"] for p in PROMPTS]


def test_greedy_equals_transformers_generate(random_model):
    model, tok = random_model
    engine, prompts = _engine(random_model)
    cfg = SamplingConfig(samples=1, temperature=0, max_new_tokens=24)
    ours = engine.generate(["a", "b", "c"], prompts, cfg)
    for p, group in zip(prompts, ours):
        ref = model.generate(torch.tensor([p]), max_new_tokens=24, do_sample=False,
                             pad_token_id=tok.eos_token_id)[0, len(p):].tolist()
        if tok.eos_token_id in ref:
            ref = ref[:ref.index(tok.eos_token_id)]
        assert group[0].completion_token_ids == ref


def test_each_sample_depends_only_on_its_seed(random_model):
    engine, prompts = _engine(random_model)
    cfg = SamplingConfig(samples=6, temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=20,
                         seed=11)
    batch = engine.generate(["a", "b", "c"], prompts, cfg)
    again = engine.generate(["a", "b", "c"], prompts, cfg)
    assert [[r.completion_token_ids for r in g] for g in batch] == \
        [[r.completion_token_ids for r in g] for g in again]
    # sample 4 of question 'c' regenerated alone: one question, one sample, seed 11 + 4
    alone = engine.generate(["c"], prompts[2:], SamplingConfig(samples=1, temperature=1.0,
                                                               top_p=0.95, top_k=50,
                                                               max_new_tokens=20, seed=15))
    assert alone[0][0].completion_token_ids == batch[2][4].completion_token_ids
    assert [r.seed for r in batch[0]] == [11, 12, 13, 14, 15, 16]
    assert len({tuple(r.completion_token_ids) for r in batch[0]}) > 1  # samples differ


def test_logprobs_and_entropies_describe_the_sampling_distribution(random_model):
    model, tok = random_model
    engine, prompts = _engine(random_model)
    cfg = SamplingConfig(samples=2, temperature=0.7, max_new_tokens=8, seed=0)
    r = engine.generate(["a"], prompts[:1], cfg)[0][0]
    ids = torch.tensor([prompts[0] + r.completion_token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompts[0]) - 1:-1].float() / 0.7
    logp = logits.log_softmax(-1)
    expect_lp = logp.gather(-1, torch.tensor(r.completion_token_ids).view(-1, 1)).squeeze(-1)
    expect_ent = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(torch.tensor(r.token_logprobs), expect_lp, atol=1e-4)
    assert torch.allclose(torch.tensor(r.token_entropies), expect_ent, atol=1e-4)
    assert r.finish_reason in ("stop", "length") and r.n_tokens == len(r.token_logprobs)


def test_length_finish_reason_and_budget(random_model):
    engine, prompts = _engine(random_model)
    cfg = SamplingConfig(samples=3, temperature=1.0, max_new_tokens=5, seed=0)
    for g in engine.generate(["a", "b"], prompts[:2], cfg):
        for r in g:
            assert r.n_tokens <= 5
            assert r.finish_reason == ("length" if r.n_tokens == 5 else "stop")


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_k=2, top_p=1.0))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=0, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=0, top_p=0.81))
    assert kept.tolist() == [[True, True, True, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=0, top_p=0.1))
    assert kept.tolist() == [[True, False, False, False]]
