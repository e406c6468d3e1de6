"""LatentLoop beyond the tiny Qwen2: a Llama (untied embeddings) and the stabiliser variants
the issue names (learned / concatenated timestep embedding, residual on h_{t-1})."""
import copy

import pytest
import torch

from attractor.latent.slr.config import LoopConfig, preset
from attractor.latent.slr.loop import LatentLoop
from attractor.models.tiny_tokenizer import build_tokenizer

PROMPTS = ["Every wumpus is a rorpus. Is Tom a rorpus or lempus?\n",
           "Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus?\n"]


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def test_a_llama_loop_caches_batches_and_trains_every_stabiliser(llama):
    model, tok = llama
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    loop = LatentLoop(copy.deepcopy(model), tok, preset("slr", max_thoughts=3))
    assert sum(1 for n, _ in loop.named_modules() if n.endswith(("q_proj", "v_proj"))) == 4
    # the cached loop equals one uncached forward of the same input embeddings (the bare loop:
    # with loop-wise LoRA each thought runs through its own adapter)
    bare = LatentLoop(copy.deepcopy(model), tok, preset("coconut", 3))
    with torch.no_grad():
        run = bare.think([ids[0]])
        seq = [bare.base.get_input_embeddings()(torch.tensor([ids[0]]))[0]]
        seq += [bare.feed(h, t) for t, h in enumerate(run.states[:-1])]
        full = bare.base.get_decoder()(inputs_embeds=torch.cat(seq)[None]).last_hidden_state[0]
    assert torch.allclose(full[len(ids[0]) - 1:], torch.stack([s[0] for s in run.states]),
                          atol=1e-4)
    both = loop.generate(ids, max_new_tokens=4)
    for i, p in enumerate(ids):
        assert loop.generate([p], max_new_tokens=4).token_ids[0] == both.token_ids[i]
    target = tok(" ### Tom is a rorpus.", add_special_tokens=False)["input_ids"]
    loss = loop.loss(ids, [3, 3], [target, target])
    loss.backward()
    assert all(p.grad is not None for n, p in loop.named_parameters() if n.endswith(".b"))
    assert loop.timestep.scale.grad is not None


def _qwen_loop(random_model, **kw):
    model, tok = random_model
    return LatentLoop(copy.deepcopy(model).float().eval(), tok, LoopConfig(**kw)), tok


def test_concatenated_timestep_starts_as_the_identity_and_learns(random_model):
    plain, tok = _qwen_loop(random_model, max_thoughts=3)
    cat, _ = _qwen_loop(random_model, max_thoughts=3, timestep="learned", timestep_mode="concat")
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    with torch.no_grad():
        a, b = plain.think(ids).states, cat.think(ids).states
    # the projection starts as the identity on the state, so thoughts are unchanged at init
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    target = tok(" ### Tom is a rorpus.", add_special_tokens=False)["input_ids"]
    cat.loss(ids, [3, 2], [target, target]).backward()
    d = cat.base.config.hidden_size
    # the e_t half of the projection starts at zero (as LoRA's B) and is what learns first...
    assert cat.timestep.proj.weight.grad[:, d:].abs().sum() > 0
    # ...then the learned table gets gradients through it
    opt = torch.optim.SGD(cat.timestep.parameters(), lr=1.0)
    opt.step()
    opt.zero_grad()
    cat.loss(ids, [3, 2], [target, target]).backward()
    assert cat.timestep.table.grad[:3].abs().sum() > 0


def test_residual_on_the_previous_state_follows_its_formula(random_model):
    bare, tok = _qwen_loop(random_model, max_thoughts=2)
    h0res, _ = _qwen_loop(random_model, max_thoughts=2, residual="h0", residual_alpha=0.5)
    prev, _ = _qwen_loop(random_model, max_thoughts=2, residual="prev", residual_alpha=0.5)
    ids = [tok(PROMPTS[0])["input_ids"]]
    with torch.no_grad():
        s_bare, s_h0, s_prev = bare.think(ids).states, h0res.think(ids).states, prev.think(ids).states
        # thought 1: f(h_0) + 0.5 h_0 for both (the previous state is h_0)
        assert torch.allclose(s_h0[1], s_bare[1] + 0.5 * s_bare[0], atol=1e-5)
        assert torch.allclose(s_prev[1], s_h0[1], atol=1e-5)
        # thought 2: f(h_1) + 0.5 h_1, where f(h_1) is one more bare pass fed h_1
        one_more, _ = _qwen_loop(random_model, max_thoughts=1)
        f_h1 = _step(one_more, ids, s_prev[1])
    assert torch.allclose(s_prev[2], f_h1 + 0.5 * s_prev[1], atol=1e-4)
    assert not torch.allclose(s_prev[2], s_h0[2], atol=1e-3)


def _step(loop, ids, h):
    """The bare loop's next state when ``h`` is fed after the prompt and one thought equal to
    ``h``'s predecessor: recomputed by an uncached forward of the whole sequence."""
    embed = loop.base.get_input_embeddings()
    first = loop.think(ids).states  # h_0 and f(h_0)
    x = torch.cat([embed(torch.tensor(ids))[0], loop.feed(first[0], 0), loop.feed(h, 1)])[None]
    return loop.base.get_decoder()(inputs_embeds=x).last_hidden_state[0, -1:]


def test_norm_matching_feeds_thoughts_at_the_token_embedding_norm(random_model):
    from attractor.latent.slr.stabilisers import embedding_norm

    loop, tok = _qwen_loop(random_model, max_thoughts=3, norm_match=True)
    raw, _ = _qwen_loop(random_model, max_thoughts=3)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    target = embedding_norm(loop.base.get_input_embeddings())
    with torch.no_grad():
        states = raw.think(ids).states
        fed = [loop.feed(h, t) for t, h in enumerate(states)]
    # the last hidden state is far from the embedding norm; the fed thought is at it
    assert not torch.allclose(states[1].norm(dim=-1), target.expand(2), rtol=0.1)
    for x in fed:
        assert torch.allclose(x.norm(dim=-1), target.expand(2), rtol=1e-4)
