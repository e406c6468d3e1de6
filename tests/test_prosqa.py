import copy
import json

import pytest

from attractor.errors import DataError
from attractor.tasks.prosqa import check_prosqa, generate_prosqa, problem_to_row
from conftest import require_data


def test_generated_problems_satisfy_every_invariant():
    problems = generate_prosqa(200, seed=3)
    for i, p in enumerate(problems):
        check_prosqa(problem_to_row(p), f"generated {i}")
    hops = {p.meta["hops"] for p in problems}
    assert hops == {3, 4, 5, 6}
    sizes = [len(p.meta["idx_to_symbol"]) for p in problems]
    assert 20 <= sum(sizes) / len(sizes) <= 26  # ProsQA averages about 23 nodes


def test_released_validation_split_passes_the_same_checker():
    rows = json.loads(require_data("prosqa_valid.json").read_text())
    assert len(rows) == 300
    for i, row in enumerate(rows):
        check_prosqa(row, f"prosqa_valid.json[{i}]")


def test_generation_is_seeded_and_prefix_stable():
    a = generate_prosqa(10, seed=7)
    b = generate_prosqa(10, seed=7)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in generate_prosqa(4, seed=7)] == [p.question for p in a[:4]]
    assert [p.question for p in generate_prosqa(3, seed=7, start=5)] == [p.question for p in a[5:8]]
    assert a[0].question != generate_prosqa(1, seed=8)[0].question


def test_hop_and_size_options_are_respected():
    for p in generate_prosqa(30, seed=1, min_hops=5, max_hops=5, min_nodes=20, max_nodes=20):
        assert p.meta["hops"] == 5 and len(p.steps) == 5
        assert len(p.meta["idx_to_symbol"]) == 20


@pytest.mark.parametrize("breakage", ["answer", "reachable_neg", "backwards_edge", "steps",
                                      "question"])
def test_checker_rejects_broken_rows(breakage):
    row = problem_to_row(generate_prosqa(1, seed=11)[0])
    bad = copy.deepcopy(row)
    sym = bad["idx_to_symbol"]
    if breakage == "answer":
        bad["answer"] = f"{sym[bad['root']]} is a {sym[bad['neg_target']]}."
    elif breakage == "reachable_neg":
        # an edge from the root straight to neg_target makes it reachable
        bad["edges"].append([bad["root"], bad["neg_target"]])
        bad["question"] = f"{sym[bad['root']]} is a {sym[bad['neg_target']]}. " + bad["question"]
    elif breakage == "backwards_edge":
        a, b = bad["edges"][0]
        bad["edges"][0] = [b, a]
    elif breakage == "steps":
        bad["steps"] = bad["steps"][:-1]
    else:
        bad["question"] = bad["question"].rsplit("Is ", 1)[0] + "Is Nobody a x or y?"
    with pytest.raises(DataError):
        check_prosqa(bad, "row")
    check_prosqa(row, "row")  # the original still passes


def test_balanced_option_equalises_people_reaching_each_option():
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prosqa import ancestors, people_reaching

    def counts(p):
        m = p.meta
        n, e, t, g = len(m["idx_to_symbol"]), m["edges"], m["target"], m["neg_target"]
        return (people_reaching(n, e, t) - people_reaching(n, e, g),
                sum(b == t for _, b in e) - sum(b == g for _, b in e),
                len(ancestors(n, e, t)) - len(ancestors(n, e, g)))

    plain = [counts(p) for p in generate_prosqa(200, seed=3)]
    # the leaks the option removes are there without it
    assert sum(c[0] != 0 for c in plain) > 40 and sum(c[1] < 0 for c in plain) > 100
    assert sum(c[2] > 0 for c in plain) > 140
    # 30 balanced graphs: rejection sampling makes them ~60x slower than plain ones
    balanced, _ = load_task("synthetic:prosqa:n=30,seed=3,balanced=1")
    assert all(c[0] == 0 and c[1] == 0 and c[2] != 0 for c in map(counts, balanced))
    assert 7 < sum(c[2] > 0 for c in map(counts, balanced)) < 23  # the bigger side: a coin
    assert sum(p.meta["hops"] > 4 for p in balanced) > 6  # not only the easy graphs survive
    for p in balanced:
        check_prosqa(problem_to_row(p), p.id)
    with pytest.raises(ValueError, match="balanced"):
        generate_prosqa(1, balanced=2)


def test_cross_option_sets_how_often_other_people_reach_the_target():
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prosqa import people_reaching

    def shared(problems):
        return sum(people_reaching(len(p.meta["idx_to_symbol"]), p.meta["edges"],
                                   p.meta["target"]) > 1 for p in problems)

    default = generate_prosqa(200, seed=4)
    assert [p.question for p in default] == [p.question for p in generate_prosqa(200, seed=4,
                                                                                  cross=8)]
    clean, _ = load_task("synthetic:prosqa:n=200,seed=4,cross=0")
    assert shared(default) > 40 and shared(clean) == 0
    for p in clean:
        check_prosqa(problem_to_row(p), p.id)
    with pytest.raises(ValueError, match="cross"):
        generate_prosqa(1, cross=101)
