"""What the embedded tiny model is: its architecture and the chain of thought it is taught.

The tiny model is a plain ``Qwen2ForCausalLM`` (the family of Qwen2.5 and DeepScaleR), so every
code path a user takes with a real model is the one the tests take with this one.

Its chain of thought is a *backward proof*: starting from the first option of the question it
names, concept by concept, a parent of the current concept (the subject of a sentence
"... is a {current}."), up to a person. If that person is the one asked about, the option is
the answer; otherwise a "." closes the chain and it traces the second option the same way::

    Is Tom a scrompus or lempus?
     scrompus rorpus shumpus Davis . lempus brimpus terpus Tom ### Tom is a lempus.

Each step is one look-up in the question (the token after it is the parent of the token
before), which a small model learns in CPU-hours; the forward shortest path (ProsQA's own
``steps``) needs a lookahead over the whole graph at its first step (GPT-2 124M reaches 77.5%
with it).
"""
from __future__ import annotations

import random

from transformers import Qwen2Config

from attractor.tasks.problem import Problem
from attractor.tasks.prosqa import QUESTION_RE, distances, edge_sentence  # noqa: F401

ARCH = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=1024, rope_theta=10000.0,
            tie_word_embeddings=True, rms_norm_eps=1e-6)
ANSWER_MARK = "###"


def tiny_config(vocab_size: int, eos_id: int) -> Qwen2Config:
    """The Qwen2 configuration of the tiny model (bos = eos = pad, all inside the vocabulary)."""
    return Qwen2Config(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id,
                       pad_token_id=eos_id, **ARCH)


def prompt_text(question: str) -> str:
    """The tiny model's prompt: the question and a newline (it has no chat template)."""
    return question + "\n"


def backward_proof(p: Problem, rng: random.Random, first_stated: bool = False) -> list[str]:
    """The backward-proof chain of thought (a list of node names and ".") for a ProsQA problem
    with its graph in ``meta``.

    Where a concept has several parents, one is drawn with ``rng``; on the chain that proves the
    true target only parents the root reaches are drawn, so every training chain is a proof.
    With ``first_stated`` the parent is not drawn but the one whose sentence comes first in the
    question (among the same candidates): the chain is then a function of the question.
    """
    m = p.meta
    sym, edges, root, target = m["idx_to_symbol"], m["edges"], m["root"], m["target"]
    n = len(sym)
    match = QUESTION_RE.search(p.question)
    if match is None:
        raise ValueError(f"{p.id}: question does not end in 'Is X a A or B?'")
    first = sym.index(match.group(2))
    second = sym.index(match.group(3))
    parents: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        parents[b].append(a)
    reach = distances(n, edges, root)

    def stated_at(u: int, child: int) -> int:
        return p.question.find(edge_sentence(sym[u], sym[child], sym[u][:1].isupper()))

    def chain(node: int, proving: bool) -> list[str]:
        out = [sym[node]]
        while parents[node]:
            cands = [u for u in parents[node] if reach[u] >= 0] if proving else parents[node]
            node = (min(cands, key=lambda u, c=node: stated_at(u, c)) if first_stated
                    else rng.choice(sorted(cands)))
            out.append(sym[node])
        return out

    if first == target:
        return chain(first, True)
    return chain(first, False) + ["."] + chain(second, True)


def backward_sentence_proof(p: Problem, rng: random.Random) -> list[str]:
    """:func:`backward_proof` in the question's own sentences: each hop from a concept to its
    parent is the sentence that states it ("Every terpus is a brimpus.", "Tom is a terpus."),
    and "." still closes a chain that does not reach the person asked about."""
    names, out = backward_proof(p, rng), []
    for child, parent in zip(names, names[1:]):
        if parent == ".":
            out.append(".")
        elif child != ".":  # the hop from "." to the second option states nothing
            out.append(edge_sentence(parent, child, parent[:1].isupper()))
    return out


def completion_text(p: Problem, rng: random.Random) -> str:
    """The completion the tiny model is trained on: backward proof, ``###``, answer sentence."""
    return " " + " ".join(backward_proof(p, rng)) + f" {ANSWER_MARK} {p.gold}"


DRILL_MARK = "@"


def lookup_drill(p: Problem, rng: random.Random, n_pairs: int = 12) -> list[tuple[str, str]]:
    """(concept, one of its parents) pairs of a problem's graph, in random order: an auxiliary
    training task that exercises the one look-up the backward proof repeats, many times per
    sequence (the proof alone has only a few). Prompted with ``DRILL_MARK`` after the question,
    so it never competes with the proof at inference."""
    m = p.meta
    sym, edges = m["idx_to_symbol"], m["edges"]
    parents: dict[int, list[int]] = {}
    for a, b in edges:
        parents.setdefault(b, []).append(a)
    nodes = sorted(parents)
    rng.shuffle(nodes)
    return [(sym[v], sym[rng.choice(sorted(parents[v]))]) for v in nodes[:n_pairs]]


def lookup_sentences(rng: random.Random, k: int) -> tuple[str, list[tuple[str, str]]]:
    """A look-up warm-up problem: ``k`` random sentences "Every X is a Y." / "Name is a Y." over
    a small pool of concepts (so concepts recur as subject and object, as in ProsQA), and the
    (concept, parent) pairs of the concepts with a single parent, in random order.

    Learning the look-up on full ProsQA graphs stalls: the model settles on "some concept of
    the question" and the two-layer circuit (gather the subject into the object's position,
    then match the query against objects) gets too little signal among ~36 sentences to form.
    It forms on a handful of sentences, and survives as their number grows."""
    from attractor.tasks.prosqa import CONCEPTS, PEOPLE

    pool = rng.sample(CONCEPTS, min(len(CONCEPTS), k + 2))
    people = rng.sample(PEOPLE, rng.randint(1, 3))
    edges: set[tuple[str, str]] = set()
    while len(edges) < k:
        if rng.random() < 0.15:
            a, c = rng.choice(people), rng.choice(pool)
        else:
            a, c = rng.sample(pool, 2)
        if (c, a) not in edges:
            edges.add((a, c))
    sents = sorted(edges)
    rng.shuffle(sents)
    text = " ".join(f"{a} is a {c}." if a in people else f"Every {a} is a {c}." for a, c in sents)
    parents: dict[str, list[str]] = {}
    for a, c in sents:
        parents.setdefault(c, []).append(a)
    pairs = [(c, ps[0]) for c, ps in parents.items() if len(ps) == 1]
    rng.shuffle(pairs)
    return text, pairs


def root_question(rng: random.Random, text: str) -> tuple[str, list[tuple[str, bool]]]:
    """A root-drill warm-up problem over a look-up warm-up text: the text plus a ProsQA-style
    question "Is {root} a {A} or {B}?" about one of its people, and every person of the text
    with whether it is the one asked about (the decision that ends a backward chain)."""
    from attractor.tasks.prosqa import CONCEPTS, PEOPLE

    words = text.replace(".", " ").split()
    people = sorted({w for w in words if w in PEOPLE})
    while len(people) < 2:  # ProsQA graphs have 2-6 people: add sentences about more
        extra = rng.choice([x for x in PEOPLE if x not in people])
        people.append(extra)
        text = f"{text} {extra} is a {rng.choice(CONCEPTS)}."
    root = rng.choice(people)
    a, b = rng.sample(CONCEPTS, 2)
    order = people[:]
    rng.shuffle(order)
    return f"{text} Is {root} a {a} or {b}?", [(p, p == root) for p in order]
