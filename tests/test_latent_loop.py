"""LatentLoop on a real (randomly initialised) tiny Qwen2: cache parity, batching, halting,
stabilisers."""
import copy
import math

import pytest
import torch

from attractor.errors import ConfigError
from attractor.latent.slr.config import LoopConfig, preset
from attractor.latent.slr.loop import LatentLoop

PROMPTS = ["Every wumpus is a rorpus. Is Tom a rorpus or lempus?\n",
           "Tom is a wumpus. Every wumpus is a yumpus. Every yumpus is a rorpus. Is Tom a x?\n"]


def _loop(random_model, **kw):
    model, tok = random_model
    return LatentLoop(copy.deepcopy(model).float().eval(), tok, LoopConfig(**kw)), tok


def _ids(tok):
    return [tok(p)["input_ids"] for p in PROMPTS]


def test_each_thought_is_one_single_position_pass_and_equals_a_full_reforward(random_model):
    loop, tok = _loop(random_model, max_thoughts=4)
    widths = []
    hook = loop.base.get_decoder().register_forward_pre_hook(
        lambda m, args, kw: widths.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)
    prompt = _ids(tok)[0]
    with torch.no_grad():
        run = loop.think([prompt])
    hook.remove()
    assert widths == [len(prompt), 1, 1, 1, 1] and run.passes == 5
    assert run.iterations.tolist() == [4]
    # the same sequence of input embeddings through one uncached forward gives the same states
    embed = loop.base.get_input_embeddings()
    seq = [embed(torch.tensor([prompt]))[0]] + [loop.feed(h, t) for t, h in enumerate(run.states[:-1])]
    x = torch.cat(seq, dim=0)[None]
    with torch.no_grad():
        full = loop.base.get_decoder()(inputs_embeds=x).last_hidden_state[0]
    got = torch.stack([s[0] for s in run.states])
    assert torch.allclose(full[len(prompt) - 1:], got, atol=1e-4)


def test_batched_questions_of_different_lengths_match_one_at_a_time(random_model):
    loop, tok = _loop(random_model, max_thoughts=3, end_marker=" ###")
    ids = _ids(tok)
    both = loop.generate(ids, max_new_tokens=6)
    for i, p in enumerate(ids):
        one = loop.generate([p], max_new_tokens=6)
        assert one.token_ids[0] == both.token_ids[i]
        assert torch.allclose(one.states[0], both.states[i], atol=1e-4)
        assert one.forward_passes[0] == both.forward_passes[i]


def test_adaptive_halting_records_iterations(random_model):
    loose, tok = _loop(random_model, max_thoughts=5, halting="state", epsilon=10.0)
    out = loose.generate(_ids(tok), max_new_tokens=2)
    assert out.iterations == [1, 1]  # any change is below 10: halt after the first thought
    strict, _ = _loop(random_model, max_thoughts=5, halting="kl", epsilon=1e-12)
    out = strict.generate(_ids(tok), max_new_tokens=2)
    # never halted: each final change is a finite number still above the tiny epsilon
    assert out.iterations == [5, 5]
    assert all(math.isfinite(c) and c > 1e-12 for c in out.final_change), out.final_change
    fixed, _ = _loop(random_model, max_thoughts=3)
    assert fixed.generate(_ids(tok), max_new_tokens=2).iterations == [3, 3]
    with pytest.raises(ConfigError, match="adaptive halting needs"):
        fixed.think(_ids(tok), adaptive=True)  # a fixed loop has no criterion to halt on


def test_stabilisers_switch_on_and_train(random_model):
    model, tok = random_model
    slr = LatentLoop(copy.deepcopy(model).float(), tok, preset("slr", max_thoughts=3))
    n_lora = sum(1 for n, _ in slr.named_modules() if n.endswith(("q_proj", "v_proj")))
    assert n_lora == 2 * model.config.num_hidden_layers and slr.timestep is not None
    ids = _ids(tok)
    target = tok(" ### Tom is a rorpus.", add_special_tokens=False)["input_ids"]
    loss = slr.loss(ids, [3, 2], [target, target])
    loss.backward()
    lora_b = [p for n, p in slr.named_parameters() if n.endswith(".b")]
    assert lora_b and all(p.grad is not None for p in lora_b)
    assert lora_b[0].grad[:3].abs().sum() > 0  # adapters of the iterations used got gradients
    assert slr.timestep.scale.grad is not None
    # with every stabiliser off, the loop is the bare (Coconut) loop
    bare = LatentLoop(copy.deepcopy(model).float().eval(), tok, preset("coconut", 3))
    off = LatentLoop(copy.deepcopy(model).float().eval(), tok,
                     LoopConfig(max_thoughts=3, lora_rank=0, timestep="none", residual="none"))
    with torch.no_grad():
        a, b = bare.think(ids), off.think(ids)
    assert torch.allclose(a.states[-1], b.states[-1])


@pytest.mark.parametrize("kw", [{"max_thoughts": 0}, {"epsilon": 0.0}, {"halting": "never"},
                                {"residual": "h9"}])
def test_bad_loop_config(kw):
    with pytest.raises(ConfigError):
        LoopConfig(**kw)


def test_cold_soft_thoughts_are_the_greedy_tokens(random_model):
    """Soft Thinking's thought is the lens-weighted mix of token embeddings: at a temperature
    near zero it is the embedding of the greedy token, so the thoughts reproduce greedy decoding
    with the tokens fed as text."""
    loop, tok = _loop(random_model, max_thoughts=3, feedback="soft", soft_temperature=1e-4)
    prompt = _ids(tok)[0]
    with torch.no_grad():
        run = loop.think([prompt])
        greedy = loop.base.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False,
                                    pad_token_id=0)[0, len(prompt):]
        emb = loop.base.get_input_embeddings()
        for t, h in enumerate(run.states[:-1]):
            assert torch.allclose(loop.feed(h, t)[0], emb(greedy[t]), atol=1e-4)
        text = loop.base(greedy[None, :3].new_tensor([prompt + greedy[:3].tolist()])).logits
    assert torch.equal(loop.logit_lens(run.states[-1])[0].argmax(), text[0, -1].argmax())


def test_token_halting_stops_where_the_lens_names_the_halt_token(random_model):
    fixed, tok = _loop(random_model, max_thoughts=4, feedback="soft", soft_temperature=1e-4)
    ids = _ids(tok)
    with torch.no_grad():
        run = fixed.think(ids)
    tops = [int(fixed.logit_lens(s)[0].argmax()) for s in run.states[1:]]
    named = tok.decode([tops[0]])   # what row 0's lens names after its first thought
    never = next(w for w in (" wumpus", " rorpus", " Tom", " lempus")
                 if tok(w, add_special_tokens=False)["input_ids"][0] not in tops)
    for halt, want in ((named, 1), (never, 4)):
        loop, _ = _loop(random_model, max_thoughts=4, feedback="soft", soft_temperature=1e-4,
                        halting="token", halt_token=halt)
        with torch.no_grad():
            assert int(loop.think(ids).iterations[0]) == want


def test_thought_loss_trains_the_lens_of_the_fed_back_states(random_model):
    model, tok = random_model
    slr = LatentLoop(copy.deepcopy(model).float(), tok, preset("slr", max_thoughts=2))
    ids = _ids(tok)
    target = tok(" ### Tom is a rorpus.", add_special_tokens=False)["input_ids"]
    step = tok(" rorpus", add_special_tokens=False)["input_ids"][0]
    lens = [[step, step], [step, -100]]
    base = slr.loss(ids, [2, 2], [target, target])
    assert torch.equal(base, slr.loss(ids, [2, 2], [target, target], lens, 0.0))
    with_aux = slr.loss(ids, [2, 2], [target, target], lens, 1.0)
    # the term is the lens cross-entropy of states 0 and 1, the ones fed back as thoughts
    run = slr.think(ids, [2, 2], adaptive=False)
    fed = torch.stack(run.states[:2], dim=1)
    want = torch.tensor(lens)
    lp = slr.logit_lens(fed)
    ce = torch.nn.functional.nll_loss(lp.reshape(-1, lp.shape[-1]), want.reshape(-1),
                                      ignore_index=-100)
    assert torch.allclose(with_aux - base, ce, atol=1e-4)
    # a few steps with that term weighted up make the thoughts name the step under the lens
    opt = torch.optim.Adam(slr.parameters(), lr=3e-3)
    for _ in range(30):
        loss = slr.loss(ids, [2, 2], [target, target], lens, 5.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        run = slr.think(ids, [2, 2], adaptive=False)
    assert int(slr.logit_lens(run.states[1][0]).argmax()) == step
