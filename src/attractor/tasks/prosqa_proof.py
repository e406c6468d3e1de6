"""The backward proof of a ProsQA question: the chain of thought the embedded tiny model writes,
and the one-name or one-sentence steps the latent curriculum replaces by thoughts.

Starting from the first option of the question, it names, concept by concept, a parent of the
current concept (the subject of a sentence "... is a {current}."), up to a person. If that
person is the one asked about, the option is the answer; otherwise a "." closes the chain and it
traces the second option the same way::

    Is Tom a scrompus or lempus?
     scrompus rorpus shumpus Davis . lempus brimpus terpus Tom ### Tom is a lempus.

(:mod:`attractor.tasks.prontoqa_proof` is the same kind of proof on ProntoQA.)
"""
from __future__ import annotations

import random

from attractor.tasks.problem import Problem
from attractor.tasks.prosqa import QUESTION_RE, distances, edge_sentence


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
