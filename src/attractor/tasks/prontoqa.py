"""ProntoQA-style true/false problems over a fictional ontology, seeded and reproducible.

Format as in Coconut's ProntoQA files: shuffled rule and fact sentences, then
"True or false: {name} is [not] {adjective}."; ``steps`` are "{name} is a {c}. {rule}" pairs
ending with "{name} is [not] {adjective}."; the answer is "True" or "False".
"""
from __future__ import annotations

import random

from attractor.tasks.problem import Problem

PEOPLE = ["Alex", "Fae", "Max", "Polly", "Rex", "Sally", "Sam", "Stella", "Wren"]
CONCEPTS = ["wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus",
            "impus", "jompus", "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus",
            "brimpus"]
# Adjective families: one adjective of a family per concept, so rules never contradict.
ADJECTIVES = [
    ["blue", "red", "brown", "orange"], ["small", "large"], ["metallic", "wooden", "liquid"],
    ["luminous"], ["transparent", "opaque"], ["nervous", "happy", "feisty", "shy"],
    ["hot", "cold", "temperate"], ["sweet", "sour", "spicy", "bitter", "fruity"],
    ["windy", "sunny", "overcast", "rainy", "snowy"], ["loud", "muffled", "melodic", "discordant"],
    ["kind", "mean", "angry", "aggressive", "amenable"], ["bright", "dull"],
    ["fast", "slow", "moderate"], ["earthy", "floral"],
]


def plural(concept: str) -> str:
    """'wumpus' -> 'wumpuses'."""
    return concept + "es"


def article(word: str) -> str:
    """'a' or 'an' before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def isa_sentence(a: str, b: str, rng: random.Random) -> str:
    """A rule "every a is a b" in one of ProntoQA's three phrasings."""
    form = rng.randrange(3)
    if form == 0:
        return f"Every {a} is {article(b)} {b}."
    if form == 1:
        return f"Each {a} is {article(b)} {b}."
    return f"{plural(a).capitalize()} are {plural(b)}."


def property_sentence(a: str, adj: str, negated: bool, rng: random.Random) -> str:
    """A rule "every a is [not] adj" in one of ProntoQA's three phrasings."""
    neg = "not " if negated else ""
    form = rng.randrange(3)
    if form == 0:
        return f"Every {a} is {neg}{adj}."
    if form == 1:
        return f"Each {a} is {neg}{adj}."
    return f"{plural(a).capitalize()} are {neg}{adj}."


def generate_prontoqa(n: int, seed: int = 0, hops: int = 5, start: int = 0,
                      distractor: int | tuple[int, int] = 2) -> list[Problem]:
    """Generate ``n`` ProntoQA-style problems with ``hops`` reasoning steps (ProntoQA: 5).

    ``distractor``: concepts on the chain that carries the opposite property (1 or 2, or a
    range ``(1, 2)`` drawn per problem; ProntoQA's own test questions have 1).
    Problem ``i`` is drawn from ``random.Random(f"prontoqa:{seed}:{i}")``.
    """
    if not 2 <= hops <= 12:   # one hop leaves no second path concept for the distractors
        raise ValueError(f"hops must be in 2..12, got {hops}")
    lo, hi = distractor if isinstance(distractor, tuple) else (distractor, distractor)
    if not 1 <= lo <= hi <= 2:
        raise ValueError(f"distractor must be 1, 2 or 1-2, got {distractor}")
    out = []
    for i in range(start, start + n):
        rng = random.Random(f"prontoqa:{seed}:{i}")
        # the default (2) draws nothing extra, so its problems stay what they were
        length = hi if lo == hi else random.Random(f"prontoqa-d:{seed}:{i}").randint(lo, hi)
        out.append(_one(rng, f"prontoqa-{seed}-{i}", hops, length))
    return out


def _one(rng: random.Random, pid: str, hops: int, distractor: int = 2) -> Problem:
    name = rng.choice(PEOPLE)
    n_path = hops  # concepts c0..c_{hops-1}; hops-1 is-a rules then one property rule
    pool = rng.sample(CONCEPTS, min(len(CONCEPTS), n_path + 6))
    path, rest = pool[:n_path], pool[n_path:]
    families = rng.sample(ADJECTIVES, len(ADJECTIVES))
    q_family, other_families = families[0], families[1:]
    q_adj = rng.choice(q_family)
    q_neg = rng.random() < 0.5          # polarity the rule gives the last path concept
    ask_neg = rng.random() < 0.5        # polarity the question asks about
    rules: list[str] = []
    for a, b in zip(path, path[1:]):
        rules.append(isa_sentence(a, b, rng))
    rules.append(property_sentence(path[-1], q_adj, q_neg, rng))
    steps = [f"{name} is {article(a)} {a}. {r}" for a, r in zip(path, rules)]
    steps.append(f"{name} is {'not ' if q_neg else ''}{q_adj}.")
    # Distractors: the opposite property on a chain the person is not on (d1 -> d2, or d1), a
    # second concept of the person (d0) with its own property, side branches off the path, and one
    # unrelated property per concept -- each from its own adjective family, so nothing
    # contradicts and the query follows from the path alone.
    d0, d1, d2 = rest[0], rest[1], rest[2]
    facts = [f"{name} is {article(path[0])} {path[0]}.", f"{name} is {article(d0)} {d0}."]
    distract = ([isa_sentence(d1, d2, rng), property_sentence(d2, q_adj, not q_neg, rng)]
                if distractor == 2 else [property_sentence(d1, q_adj, not q_neg, rng)])
    fam_iter = iter(other_families * 2)
    distract.append(property_sentence(d0, rng.choice(next(fam_iter)), rng.random() < 0.5, rng))
    for c in rest[3:]:
        distract.append(isa_sentence(rng.choice(path[:-1]), c, rng))
        distract.append(property_sentence(c, rng.choice(next(fam_iter)), rng.random() < 0.5, rng))
    for c in path[:-1]:
        distract.append(property_sentence(c, rng.choice(next(fam_iter)), rng.random() < 0.5, rng))
    sentences = rules + distract + facts
    rng.shuffle(sentences)
    query = f"{name} is {'not ' if ask_neg else ''}{q_adj}."
    question = " ".join(sentences) + f" True or false: {query}"
    answer = "True" if ask_neg == q_neg else "False"
    return Problem(id=pid, question=question, gold=answer, steps=steps, kind="prontoqa",
                   meta={"hops": hops})
