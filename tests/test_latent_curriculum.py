"""The Coconut curriculum's examples: which steps become thoughts, and what is left as text."""
import random

import pytest

from attractor.errors import ConfigError, DataError
from attractor.latent.slr.curriculum import DIRECT, build_example, cot_steps, target_text
from attractor.latent.slr.train import LatentTrainConfig
from attractor.models.tiny_recipe import completion_text
from attractor.models.tiny_tokenizer import build_tokenizer
from attractor.tasks.loaders import load_task
from conftest import DATA_DIR, require_data

STEPS = ["Tom is a terpus.", "Every terpus is a brimpus.", "Every brimpus is a lempus."]
GOLD = "Tom is a lempus."


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _text(tok, ex):
    return tok.decode(ex.target, skip_special_tokens=True)


def test_stage_k_replaces_the_first_k_steps(tok):
    for k in range(3):
        ex = build_example(STEPS, GOLD, [1, 2], tok, k, stages=4, per_step=2)
        assert ex.thoughts == 2 * k
        assert _text(tok, ex) == target_text(STEPS, GOLD, k) == " " + " ".join(STEPS[k:]) + " ### " + GOLD
    # a stage past the chain's length makes every step latent but spends only its steps' thoughts
    ex = build_example(STEPS, GOLD, [1, 2], tok, 3, stages=4, per_step=2)
    assert ex.thoughts == 6 and _text(tok, ex) == " ### " + GOLD
    assert ex.target[-1] == tok.eos_token_id


def test_last_stage_gets_all_thoughts_and_no_cot_none(tok):
    final = build_example(STEPS, GOLD, [1], tok, 4, stages=4, per_step=1)
    assert final.thoughts == 4 and _text(tok, final) == " ### " + GOLD  # T at inference
    direct = build_example(STEPS, GOLD, [1], tok, DIRECT, stages=4, per_step=1)
    assert direct.thoughts == 0 and _text(tok, direct) == " ### " + GOLD


def test_schedules_of_the_methods():
    assert LatentTrainConfig(method="slr", stages=3).schedule() == [0, 1, 2, 3]
    assert LatentTrainConfig(method="slr", stages=3, first_stage=1).schedule() == [1, 2, 3]
    assert LatentTrainConfig(method="cot", stages=3).schedule() == [0]
    assert LatentTrainConfig(method="no-cot", stages=3).schedule() == [DIRECT]
    with pytest.raises(ConfigError):
        LatentTrainConfig(first_stage=7, stages=6)
    with pytest.raises(ConfigError):
        LatentTrainConfig(cot_format="forward")


def test_backward_proof_steps_are_the_tiny_models_chain():
    problems, _ = load_task("synthetic:prosqa:n=20,seed=5")
    steps = cot_steps(problems, "backward-proof", seed=0)
    for p, s in zip(problems, steps):
        # the same chain the embedded model was trained to write, one node per step
        assert target_text(s, p.gold, 0) == completion_text(p, random.Random(f"0:{p.id}"))
        assert all(" " not in step for step in s)
    assert cot_steps(problems, "task", 0) == [p.steps for p in problems]


@pytest.mark.parametrize("task", ["synthetic:prosqa:n=40,seed=5", "prosqa"])
def test_first_stated_proof_takes_the_parent_stated_first_and_still_proves(task):
    from attractor.tasks.prosqa import distances, edge_sentence

    if task == "prosqa":
        require_data("prosqa_valid.json")  # skips, not fails, without ../shared/data
    problems, _ = load_task(task, limit=60, data_dir=str(DATA_DIR))
    steps = cot_steps(problems, "backward-proof-first", seed=0)
    assert steps == cot_steps(problems, "backward-proof-first", seed=1)  # no draws
    for p, chain in zip(problems, steps):
        m = p.meta
        sym, edges = m["idx_to_symbol"], m["edges"]
        idx = {name: i for i, name in enumerate(sym)}
        reach = distances(len(sym), edges, m["root"])
        proving = chain[chain.index(".") + 1:] if "." in chain else chain
        assert proving[0] == sym[m["target"]] and proving[-1] == sym[m["root"]]

        def at(u, c):
            return p.question.find(edge_sentence(sym[u], sym[c], sym[u][:1].isupper()))

        for part, is_proof in ((chain[:chain.index(".")] if "." in chain else [], False),
                               (proving, True)):
            for child, parent in zip(part, part[1:]):
                c, u = idx[child], idx[parent]
                cands = [a for a, b in edges if b == c and (reach[a] >= 0 or not is_proof)]
                assert at(u, c) >= 0 and at(u, c) == min(at(a, c) for a in cands)


def test_backward_proof_needs_prosqa_graphs_or_prontoqa_questions():
    problems, _ = load_task("synthetic:arith:n=2,seed=5")
    with pytest.raises(DataError, match="needs ProsQA graphs or ProntoQA questions"):
        cot_steps(problems, "backward-proof", seed=0)


def test_thought_targets_point_each_thought_at_the_step_it_replaces(tok):
    from attractor.latent.slr.curriculum import thought_targets

    steps = ["scrompus", "rorpus", "Davis", ".", "lempus"]
    first = [tok(" " + s, add_special_tokens=False)["input_ids"][0] for s in steps]
    ex = build_example(steps, GOLD, [1], tok, 2, stages=6, per_step=1, lens=True)
    assert ex.lens == first[:2]  # state 0 (the question's last) is fed as thought 0: step 0
    assert build_example(steps, GOLD, [1], tok, 2, stages=6, per_step=1).lens == []
    # c = 2: the first thought of each step's pair names it, the second is free
    assert thought_targets(steps, 4, 2, tok) == [first[0], -100, first[1], -100]
    # the last stage has more thoughts than this chain has steps: the state after the last
    # step names the answer marker (where halting=token stops), the rest are free
    mark = tok(" ###", add_special_tokens=False)["input_ids"][0]
    assert build_example(steps, GOLD, [1], tok, 6, stages=6, per_step=1, lens=True).lens == \
        first + [mark]
    assert thought_targets(steps[:3], 6, 1, tok) == first[:3] + [mark, -100, -100]
    with pytest.raises(ConfigError, match="`thought_loss`"):
        LatentTrainConfig(thought_loss=-1)
