"""What the embedded tiny model is: its architecture and the chain of thought it is taught.

The tiny model is a plain ``Qwen2ForCausalLM`` (the family of Qwen2.5 and DeepScaleR), so every
code path a user takes with a real model is the one the tests take with this one.

Its chain of thought is the *backward proof* of :mod:`attractor.tasks.prosqa_proof`::

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

from attractor.tasks.problem import ANSWER_MARK, Problem
from attractor.tasks.prosqa_proof import backward_proof

ARCH = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=1024, rope_theta=10000.0,
            tie_word_embeddings=True, rms_norm_eps=1e-6)


def tiny_config(vocab_size: int, eos_id: int) -> Qwen2Config:
    """The Qwen2 configuration of the tiny model (bos = eos = pad, all inside the vocabulary)."""
    return Qwen2Config(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id,
                       pad_token_id=eos_id, **ARCH)


def prompt_text(question: str) -> str:
    """The tiny model's prompt: the question and a newline (it has no chat template)."""
    return question + "\n"


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
