"""A backward proof for ProntoQA questions: the chain of thought the tiny model learns there.

ProntoQA asks "True or false: Stella is [not] floral." and states the adjective twice: once on
the last concept of Stella's chain ("Every lorpus is floral.") and once, with the other
polarity, on a distractor chain Stella is not on. The backward proof starts from the query's
own predicate ("not floral"), names the subject of the sentence that says it, then the subject
of the sentence "... is a {current}" (in any of ProntoQA's phrasings, plural ones included),
and so on up to a concept nothing points at or a person. If that person is the one asked about
the query is True; otherwise a "." closes the chain, the other polarity is traced the same way,
and the query is False::

    True or false: Stella is not floral.
     not floral dumpus numpus . floral lorpus yumpus rompus gorpus zumpus Stella ### False

The first step copies the query; every other step is one look-up in the question ("the subject
of the sentence that ends in the previous step": the circuit of the tiny model's ProsQA proof),
and the answer only asks whether the proof needed a second chain. All 800 questions of
``prontoqa_test.jsonl`` have exactly this structure (two sentences with the queried adjective,
exactly one traced back to the person, no concept with two subclasses on the way).
"""
from __future__ import annotations

import re

from attractor.errors import DataError
from attractor.tasks.problem import Problem

QUERY_RE = re.compile(r"True or false: ([A-Z][a-z]+) is (not )?([a-z]+)\.?\s*$")
MAX_CHAIN = 32


def _singular(word: str) -> str:
    """'Wumpuses' -> 'wumpus' (ProntoQA's plural is the singular + 'es')."""
    w = word.lower()
    return w[:-2] if w.endswith("es") else w


def parse(question: str, pid: str, said: dict | None = None
          ) -> tuple[dict[str, list[str]], list[tuple[str, bool, str]], str, bool, str]:
    """The question's is-a edges (object -> subjects, in question order), its property
    sentences (subject, negated, adjective), and the query (name, negated, adjective).
    ``said``, when given, is filled with the sentence (verbatim, with its ".") behind each edge
    ``(object, subject)`` and each property ``(subject, negated, adjective)``."""
    said = {} if said is None else said
    m = QUERY_RE.search(question)
    if m is None:
        raise DataError(f"{pid}: question does not end in 'True or false: X is [not] adj.'")
    body = question[:m.start()]
    parents: dict[str, list[str]] = {}
    props: list[tuple[str, bool, str]] = []
    for sentence in (s.strip() for s in body.split(".")):
        w = sentence.split()
        if len(w) < 3:
            continue
        if w[0] in ("Every", "Each") and w[2] == "is":
            subj, rest = w[1], w[3:]
        elif w[1] in ("is", "are"):
            subj, rest = (_singular(w[0]) if w[1] == "are" else w[0]), w[2:]
        else:
            rest = []
        if not rest:
            raise DataError(f"{pid}: cannot read the sentence {sentence!r}")
        if rest[0] in ("a", "an") and len(rest) == 2:
            key: tuple = (rest[1], subj)
        elif w[1] == "are" and len(rest) == 1 and rest[0].endswith("es") and w[0].endswith("es"):
            # "Xes are Yes." is an is-a rule, "Xes are floral." a property: ProntoQA's fictional
            # concepts all end in "-pus" (plural "-puses"); a concept seen before also counts
            is_a = rest[0].endswith("uses") or _singular(rest[0]) in parents
            key = (_singular(rest[0]), subj) if is_a else (subj, False, rest[0])
        else:
            key = (subj, rest[0] == "not", rest[-1])
        if len(key) == 2:
            parents.setdefault(key[0], []).append(subj)
        else:
            props.append(key)
        said.setdefault(key, sentence + ".")
    return parents, props, m.group(1), bool(m.group(2)), m.group(3)


def _chain(start: str, parents: dict[str, list[str]]) -> list[str]:
    out = [start]
    while parents.get(out[-1]) and len(out) < MAX_CHAIN:
        out.append(parents[out[-1]][0])
    return out


def prontoqa_backward_proof(p: Problem) -> tuple[list[str], str]:
    """The backward proof of a ProntoQA problem and the answer it proves ("True"/"False")."""
    parents, props, name, neg, adj = parse(p.question, p.id)
    same = [s for s, n, a in props if a == adj and n == neg]
    other = [s for s, n, a in props if a == adj and n != neg]
    if not same or not other:
        raise DataError(f"{p.id}: needs one sentence saying '{adj}' each way "
                        f"({len(same)} agree with the query, {len(other)} disagree)")
    said = ("not " if neg else "") + adj
    first = [said] + _chain(same[0], parents)
    if first[-1] == name:
        return first, "True"
    unsaid = ("" if neg else "not ") + adj
    return first + [".", unsaid] + _chain(other[0], parents), "False"


def prontoqa_sentence_proof(p: Problem) -> tuple[list[str], str]:
    """The same backward proof written in the question's own sentences, one premise per step
    (the dead end of a first chain stays a "." step)::

        True or false: Stella is not floral.
         Dumpuses are not floral. . Every lorpus is floral. Each yumpus is a lorpus. Rompuses
         are yumpuses. Gorpuses are rompuses. Zumpuses are gorpuses. Stella is a zumpus. ### False

    Each step is a whole sentence (4-6 tokens of the tiny tokenizer), as in the chains of
    thought of ProntoQA and of the Coconut paper, where one step is one sentence."""
    said: dict = {}
    parse(p.question, p.id, said)
    proof, answer = prontoqa_backward_proof(p)
    neg = proof[0].startswith("not ")
    adj = proof[0].split()[-1]
    steps: list[str] = []
    prev: str | None = None
    for i, word in enumerate(proof[1:], 1):
        if proof[i - 1] == ".":  # the other chain's predicate: its sentence is the next step
            continue
        if word == ".":  # the dead end of the first chain
            steps.append(".")
            neg, prev = not neg, None
            continue
        key = (word, neg, adj) if prev is None else (prev, word)
        if key not in said:
            raise DataError(f"{p.id}: no sentence in the question for proof step {word!r}")
        steps.append(said[key])
        prev = word
    return steps, answer
