"""Causal interventions on continuous thoughts, on a random tiny Qwen2 and on the released
ProsQA SLR loop (real answers)."""
import copy

import pytest
import torch

from attractor.latent.checkpoint import RELEASED, load_loop
from attractor.latent.slr.config import LoopConfig
from attractor.grading.grade import correct_answers
from attractor.latent.slr.interventions import (KINDS, batches, clean_inputs, intervening, recorder,
                                            intervention_table, mean_inputs, swap, swap_chain,
                                            texts, zero)
from attractor.latent.slr.loop import LatentLoop
from attractor.tasks.loaders import load_task
from attractor.tasks.prompts import prompt_ids

PROMPTS = ["Every wumpus is a rorpus. Is Tom a rorpus or lempus?\n",
           "Tom is a wumpus. Every wumpus is a yumpus. Every yumpus is a rorpus. Is Tom a x?\n",
           "Every yumpus is a lempus. Is Tom a yumpus?\n"]


@pytest.fixture
def loop_and_ids(random_model):
    model, tok = random_model
    loop = LatentLoop(copy.deepcopy(model).float().eval(), tok,
                      LoopConfig(max_thoughts=3, timestep="sinusoidal", norm_match=True))
    return loop, [tok(p)["input_ids"] for p in PROMPTS]


@pytest.mark.parametrize("n", [1, 2, 32, 33, 34, 65, 100])
def test_batches_cover_every_question_and_never_leave_one_alone(n):
    sl = batches(n)
    assert [i for s in sl for i in range(n)[s]] == list(range(n))
    assert all(s.stop - s.start <= 33 for s in sl)
    if n >= 2:
        assert all(s.stop - s.start >= 2 for s in sl)


def test_swap_feeds_the_previous_questions_thought_and_leaves_other_thoughts(loop_and_ids):
    loop, ids = loop_and_ids
    with torch.no_grad():
        states = loop.think(ids, adaptive=False).states
        clean = [loop.feed(states[t], t) for t in range(3)]
        with intervening(loop, swap(2)):  # the second thought, fed states[1]
            fed = [loop.feed(states[t], t) for t in range(3)]
    assert torch.equal(fed[0], clean[0]) and torch.equal(fed[2], clean[2])
    assert torch.equal(fed[1], clean[1][[2, 0, 1]])
    assert loop.hooks == []  # removed after the block


def test_zero_changes_the_states_from_that_thought_on(loop_and_ids):
    loop, ids = loop_and_ids
    with torch.no_grad():
        clean = loop.think(ids, adaptive=False).states
        with intervening(loop, zero(2)):
            got = loop.think(ids, adaptive=False).states
    assert torch.allclose(clean[1], got[1])            # thought 1 untouched
    assert not torch.allclose(clean[2], got[2], atol=1e-3)


def test_every_thought_swapped_feeds_the_donors_clean_chain(loop_and_ids):
    loop, ids = loop_and_ids
    (chain,) = clean_inputs(loop, ids)
    assert chain.shape[:2] == (3, 3)
    fed = {}
    # two named hooks in order: the swap, then a recorder of what the swap feeds
    with torch.no_grad(), intervening(loop, ("swap", swap_chain(chain)), ("rec", recorder(fed))):
        assert [name for name, _ in loop.hooks] == ["swap", "rec"]
        loop.think(ids, adaptive=False)
    assert loop.hooks == []
    for t in range(1, 4):
        assert torch.equal(fed[t], chain[t - 1][[2, 0, 1]])


def test_mean_inputs_average_each_thoughts_clean_input(loop_and_ids):
    loop, ids = loop_and_ids
    with torch.no_grad():
        states = loop.think(ids, adaptive=False).states
        want = [loop.feed(states[t], t).mean(0) for t in range(3)]
    got = mean_inputs(clean_inputs(loop, ids))
    assert len(got) == 3
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-5)


@pytest.fixture(scope="module")
def released_slr():
    loop, _ = load_loop(RELEASED / "prosqa" / "slr")
    problems, _ = load_task("synthetic:prosqa:n=16,seed=5")
    return loop, problems, [prompt_ids(p, loop.tok, True) for p in problems]


@pytest.mark.released
def test_intervention_table_on_the_released_loop(released_slr):
    loop, problems, prompts = released_slr
    df = intervention_table(loop, problems, prompts)
    assert len(df) == (loop.cfg.max_thoughts + 1) * len(KINDS)
    assert set(df["thought"]) == set(range(0, loop.cfg.max_thoughts + 1))
    assert (df["scope"] == "all").sum() == len(KINDS)
    assert (df.loc[df["scope"] == "all", "thought"] == 0).all()
    clean = sum(correct_answers(texts(loop, prompts), problems)) / len(problems)
    assert (df["clean_accuracy"] == clean).all() and 0.4 < clean
    assert (df["accuracy"] - df["accuracy_change"] - clean).abs().max() < 1e-9
    # an answer can only change accuracy by flipping
    assert (df["accuracy_change"].abs() <= df["flip_rate"] + 1e-9).all()
    # the trained loop reads its thoughts: zeroing one flips answers somewhere, and zeroing
    # them all flips at least as many as zeroing the first
    zero_rows = df[df["intervention"] == "zero"].set_index("thought")["flip_rate"]
    assert zero_rows.max() > 0 and zero_rows[0] >= zero_rows[1]


def test_swap_and_mean_are_no_ops_when_every_question_is_the_same(released_slr):
    loop, problems, prompts = released_slr
    same_p, same = [problems[0]] * 4, [prompts[0]] * 4
    df = intervention_table(loop, same_p, same, kinds=("mean", "swap"))
    assert (df["flip_rate"] == 0).all()


def test_unknown_intervention_is_refused(released_slr):
    loop, problems, prompts = released_slr
    with pytest.raises(ValueError, match="unknown intervention 'shuffle'"):
        intervention_table(loop, problems[:2], prompts[:2], kinds=("shuffle",))
