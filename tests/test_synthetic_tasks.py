import re

import pytest

from attractor.tasks.arith import generate_arith
from attractor.tasks.prontoqa import CONCEPTS, generate_prontoqa, plural


def _prontoqa_truth(question: str) -> str:
    """Forward-chain the rules of a generated ProntoQA problem to decide its query."""
    facts, query = question.split(" True or false: ")
    isa, props, member = {}, {}, set()
    singular = {}
    for s in facts.split(". "):
        s = s.strip().rstrip(".")
        m = re.fullmatch(r"(?:Every|Each) (\w+) is (not )?(?:an? )?(\w+)", s)
        m2 = re.fullmatch(r"(\w+) are (not )?(\w+)", s)
        m3 = re.fullmatch(r"([A-Z]\w+) is an? (\w+)", s)
        if m3 and not s.startswith(("Every", "Each")):
            member.add(m3.group(2))
            continue
        if m:
            a, neg, b = m.group(1), m.group(2), m.group(3)
        elif m2:
            a, neg, b = m2.group(1).lower()[:-2], m2.group(2), m2.group(3)
            b = b[:-2] if b[:-2] in CONCEPTS else b
        else:
            raise AssertionError(s)
        singular[a] = a
        if b in CONCEPTS and not neg:
            isa.setdefault(a, []).append(b)
        else:
            props.setdefault(a, []).append((b, bool(neg)))
    seen, stack, derived = set(), list(member), {}
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        for adj, neg in props.get(c, []):
            derived.setdefault(adj, set()).add(neg)
        stack += isa.get(c, [])
    qm = re.fullmatch(r"\w+ is (not )?(\w+)\.", query)
    neg_q, adj = bool(qm.group(1)), qm.group(2)
    assert len(derived.get(adj, set())) == 1, "the query must be decided by exactly one rule"
    return "True" if (neg_q in derived[adj]) else "False"


def test_prontoqa_answers_follow_from_the_rules():
    for p in generate_prontoqa(60, seed=2):
        assert _prontoqa_truth(p.question) == p.gold
        assert len(p.steps) == 6 and p.steps[-1].startswith(p.question.split("True or false: ")[1]
                                                            .split(" is ")[0])


def test_prontoqa_hops_option_and_seed():
    ps = generate_prontoqa(5, seed=1, hops=3)
    assert all(len(p.steps) == 4 for p in ps)
    assert [p.question for p in ps] == [p.question for p in generate_prontoqa(5, seed=1, hops=3)]
    assert plural("impus") == "impuses"


def test_prontoqa_distractor_chain_length_option():
    from attractor.tasks.prontoqa_proof import prontoqa_backward_proof

    # the default keeps the problems it always made; 1 or 1-2 shortens the opposite chain
    assert [p.question for p in generate_prontoqa(20, seed=3)] == \
        [p.question for p in generate_prontoqa(20, seed=3, distractor=2)]
    lengths = set()
    for p in generate_prontoqa(80, seed=3, distractor=(1, 2)):
        assert _prontoqa_truth(p.question) == p.gold
        steps, answer = prontoqa_backward_proof(p)
        assert answer == p.gold
        # the chain that says the opposite of the person's: 1 or 2 concepts, then its predicate
        other = steps[steps.index(".") + 1:] if answer == "False" else None
        if other is None:
            continue
        lengths.add(len(steps) - len(other) - 2)
    assert lengths == {1, 2}
    for p in generate_prontoqa(20, seed=3, distractor=1):
        steps, answer = prontoqa_backward_proof(p)
        assert answer == "True" or steps.index(".") == 2
    with pytest.raises(ValueError, match="distractor must be 1, 2 or 1-2"):
        generate_prontoqa(1, distractor=3)


def test_arith_steps_compute_the_answer():
    for p in generate_arith(50, seed=4, steps=4):
        value = None
        for step in p.steps:
            m = re.fullmatch(r"(-?\d+) ([-+*]) (\d+) = (-?\d+)\.", step)
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            assert value is None or a == value
            assert c == (a + b if op == "+" else a - b if op == "-" else a * b)
            value = c
        assert str(value) == p.gold and len(p.steps) == 4


def test_a_prontoqa_hop_count_it_cannot_build_is_one_config_error():
    from attractor.errors import ConfigError
    from attractor.tasks.loaders import load_task

    with pytest.raises(ConfigError, match="hops must be in 2..12"):
        load_task("synthetic:prontoqa:hops=1,n=3")
    assert len(load_task("synthetic:prontoqa:hops=2,n=3")[0]) == 3


def test_arith_expression_style_asks_the_same_questions_as_one_expression():
    """``style=expr`` ("What is (9 + 7) * 3?") evaluates, by Python's own parser, to the gold of
    the words style's question with the same seed and index; an unknown style is one error."""
    import ast
    import operator

    from attractor.errors import ConfigError
    from attractor.tasks.loaders import load_task

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}

    def evaluate(node):
        if isinstance(node, ast.BinOp):
            return ops[type(node.op)](evaluate(node.left), evaluate(node.right))
        return node.value

    words, _ = load_task("synthetic:arith:hops=3,n=20,seed=2")
    expr, src = load_task("synthetic:arith:hops=3,n=20,seed=2,style=expr")
    for w, e in zip(words, expr):
        m = re.fullmatch(r"What is (.+)\?", e.question)
        assert str(evaluate(ast.parse(m.group(1), mode="eval").body)) == e.gold == w.gold
        assert e.steps == w.steps and w.question.startswith("Start with")
    assert src.fields["style"] == "expr"
    with pytest.raises(ConfigError, match="style must be one of words, expr"):
        load_task("synthetic:arith:style=sentences,n=2")
