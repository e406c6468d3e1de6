"""ProsQA-format graph problems: a seeded generator and the invariant checker.

The format is that of Coconut's ProsQA (facebookresearch/coconut): a DAG of people and
"-pus" concepts told as shuffled sentences, the question "Is {root} a {A} or {B}?", the answer
"{root} is a {target}." and ``steps``, a shortest root-to-target path. The generator is our own;
:func:`check_prosqa` encodes every invariant in ``shared/data/README.md`` and is run on both
generated data and the released validation split.
"""
from __future__ import annotations

import random
import re
from collections import deque
from typing import Any

from attractor.errors import DataError
from attractor.tasks.problem import Problem

# The domain's vocabulary: the 17 people and 38 concepts that ProsQA uses (same in every split).
PEOPLE = ["Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver",
          "Polly", "Rex", "Sally", "Sam", "Stella", "Tom", "Wren"]
CONCEPTS = ["bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus",
            "gorpus", "grimpus", "gwompus", "hilpus", "impus", "jelpus", "jompus", "kerpus",
            "lempus", "lorpus", "numpus", "quimpus", "rempus", "rompus", "rorpus", "scrompus",
            "shumpus", "sterpus", "storpus", "terpus", "timpus", "tumpus", "vumpus", "worpus",
            "wumpus", "yerpus", "yimpus", "yumpus", "zhorpus", "zumpus"]


def edge_sentence(src: str, dst: str, src_is_person: bool) -> str:
    """The sentence that states edge ``src -> dst`` ("Tom is a X." or "Every X is a Y.")."""
    return f"{src} is a {dst}." if src_is_person else f"Every {src} is a {dst}."


def _children(n: int, edges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        out[a].append(b)
    return out


def _parents(n: int, edges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        out[b].append(a)
    return out


def distances(n: int, edges: list[list[int]], src: int) -> list[int]:
    """Breadth-first hop distance from ``src`` to every node (-1 where unreachable)."""
    ch = _children(n, edges)
    dist = [-1] * n
    dist[src] = 0
    queue = deque([src])
    while queue:
        u = queue.popleft()
        for v in ch[u]:
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def shortest_path(n: int, edges: list[list[int]], src: int, dst: int) -> list[int] | None:
    """One shortest path from ``src`` to ``dst`` as a node list, or None if unreachable."""
    dist = distances(n, edges, src)
    if dist[dst] < 0:
        return None
    par = _parents(n, edges)
    path = [dst]
    while path[-1] != src:
        v = path[-1]
        path.append(min(u for u in par[v] if dist[u] == dist[v] - 1))
    return path[::-1]


def ancestors(n: int, edges: list[list[int]], node: int) -> set[int]:
    """Every node with a directed path to ``node`` (``node`` excluded)."""
    par = _parents(n, edges)
    seen: set[int] = set()
    stack = [node]
    while stack:
        for u in par[stack.pop()]:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen


def generate_prosqa(
    n: int,
    seed: int = 0,
    min_hops: int = 3,
    max_hops: int = 6,
    min_nodes: int = 18,
    max_nodes: int = 28,
    edge_ratio: float = 1.58,
    start: int = 0,
    balanced: int = 0,
    cross: int = 8,
) -> list[Problem]:
    """Generate ``n`` ProsQA-format problems, reproducibly from ``seed``.

    Args:
        n: number of problems.
        seed: problem ``i`` is drawn from ``random.Random(f"prosqa:{seed}:{i}")``, so a prefix of a
            larger set equals a smaller set.
        min_hops, max_hops: range of the shortest root-to-target distance (ProsQA uses 3-6).
        min_nodes, max_nodes: range of graph sizes (ProsQA averages about 23 nodes).
        edge_ratio: edges per node (ProsQA averages 36 edges for 23 nodes).
        start: index of the first problem (problems ``start .. start+n-1`` are returned).
        balanced: 1 removes three label leaks: every graph has as many people reaching the
            target as reaching the other option, as many sentences naming each option (its
            parents: the target has fewer, so counting words answers 73% of generated and 67%
            of ProsQA valid questions), and the option with more ancestors is the target in
            exactly half of the graphs (a coin drawn per problem says which side has more;
            no ties). Without it the root's side is the bigger one, so "the option
            more concepts lead to" answers ~80% of generated questions (70% of ProsQA valid).
            A model can learn these instead of following a chain; with the option it cannot.
            About 10x slower to generate (rejection sampling).
        cross: percent chance that a candidate edge from the distractor side into the root
            side is kept (0-100). Such an edge lets another person reach the root's concepts,
            so a backward proof must choose its parents; at the default 8, about a third of
            generated questions have two or more people reaching the target, against 9% of
            ProsQA valid. 0: only the root reaches the target, and every upward walk from the target
            ends at the root.
    """
    if not 1 <= min_hops <= max_hops:
        raise ValueError(f"hops: need 1 <= min_hops <= max_hops, got {min_hops}..{max_hops}")
    if min_nodes < max_hops + 4:
        raise ValueError(f"min_nodes={min_nodes} is too small for max_hops={max_hops}")
    if balanced not in (0, 1):
        raise ValueError(f"balanced must be 0 or 1, got {balanced}")
    if not 0 <= cross <= 100:
        raise ValueError(f"cross is a percentage (0-100), got {cross}")
    return [_one_problem(random.Random(f"prosqa:{seed}:{i}"), f"prosqa-{seed}-{i}", min_hops,
                         max_hops, min_nodes, max_nodes, edge_ratio, bool(balanced),
                         cross / 100)
            for i in range(start, start + n)]


def people_reaching(n: int, edges: list[list[int]], node: int) -> int:
    """How many people (parentless nodes) have a path to ``node``."""
    has_parent = {b for _, b in edges}
    return sum(1 for u in ancestors(n, edges, node) if u not in has_parent)


def _one_problem(rng: random.Random, pid: str, min_hops: int, max_hops: int, min_nodes: int,
                 max_nodes: int, edge_ratio: float, balanced: bool, cross: float) -> Problem:
    target_bigger = balanced and rng.random() < 0.5  # no draw unless balanced: seeds stay put
    while True:
        graph = _try_graph(rng, min_hops, max_hops, min_nodes, max_nodes, edge_ratio, cross)
        if graph is None:
            continue
        symbols, edges, root, target, neg = graph
        if not balanced or _balanced(len(symbols), edges, target, neg, target_bigger):
            break
    n = len(symbols)
    people = {i for i in range(n) if symbols[i] in PEOPLE}
    sentences = [edge_sentence(symbols[a], symbols[b], a in people) for a, b in edges]
    rng.shuffle(sentences)
    options = [symbols[target], symbols[neg]]
    rng.shuffle(options)
    question = " ".join(sentences) + f" Is {symbols[root]} a {options[0]} or {options[1]}?"
    path = shortest_path(n, edges, root, target)
    assert path is not None
    steps = [edge_sentence(symbols[a], symbols[b], a in people) for a, b in zip(path, path[1:])]
    meta = {"idx_to_symbol": symbols, "edges": edges, "root": root, "target": target,
            "neg_target": neg, "hops": len(steps)}
    return Problem(id=pid, question=question, gold=f"{symbols[root]} is a {symbols[target]}.",
                   steps=steps, kind="prosqa", meta=meta)


def _balanced(n: int, edges: list[list[int]], target: int, neg: int, target_bigger: bool
              ) -> bool:
    """Whether a graph passes ``balanced=1``: equal parent and people counts, and the ancestor
    sets' sizes ordered as the coin ``target_bigger`` says (cheapest test first: most graphs
    fail it, and this runs ~10 times per kept graph)."""
    if sum(b == target for _, b in edges) != sum(b == neg for _, b in edges):
        return False  # as many sentences end in either option: counting them tells nothing
    anc_t, anc_n = ancestors(n, edges, target), ancestors(n, edges, neg)
    has_parent = {b for _, b in edges}
    if len(anc_t - has_parent) != len(anc_n - has_parent):  # people reaching each option
        return False
    diff = len(anc_t) - len(anc_n)
    return diff != 0 and (diff > 0) == target_bigger


def _try_graph(rng: random.Random, min_hops: int, max_hops: int, min_nodes: int, max_nodes: int,
               edge_ratio: float, cross: float
               ) -> tuple[list[str], list[list[int]], int, int, int] | None:
    """One attempt at a graph; None when the random choices painted it into a corner.

    Like the released data, the graph has a root side (what the root reaches) and a distractor
    side (other people and what they reach, neg_target among it); edges from the distractor side
    into the root side are rare, none go the other way, and target and neg_target are leaves.
    """
    hops = rng.randint(min_hops, max_hops)
    n_nodes = rng.randint(min_nodes, max_nodes)
    n_people = rng.choices([2, 3, 4, 5, 6], weights=[60, 30, 7, 2, 1])[0]
    n_concepts = min(n_nodes - n_people, len(CONCEPTS))
    n = n_people + n_concepts
    # Node order is topological: a random permutation with a person first (it has no parent).
    kinds = ["p"] * n_people + ["c"] * n_concepts
    rng.shuffle(kinds)
    first_person = kinds.index("p")
    kinds[0], kinds[first_person] = kinds[first_person], kinds[0]
    person_idx = [i for i, k in enumerate(kinds) if k == "p"]
    concept_idx = [i for i, k in enumerate(kinds) if k == "c"]
    if max(person_idx) >= n - 2:
        return None
    root = rng.choice(person_idx)
    later = [c for c in concept_idx if c > root]
    if len(later) < hops + 1:
        return None
    path = [root] + sorted(rng.sample(later, hops))
    target = path[-1]
    others = [p for p in person_idx if p != root]
    neg_src = rng.choice(others)
    neg_pool = [c for c in concept_idx if c > neg_src and c not in path]
    if not neg_pool:
        return None
    neg_len = max(1, min(len(neg_pool), hops - rng.choice([0, 1, 1, 2, 2, 3])))
    neg_path = [neg_src] + sorted(rng.sample(neg_pool, neg_len))
    neg = neg_path[-1]
    root_side = {root, *path}
    for c in concept_idx:
        if c not in root_side and c not in neg_path and rng.random() < 0.6:
            root_side.add(c)
    edges: list[list[int]] = [[a, b] for a, b in zip(path, path[1:])]
    edges += [[a, b] for a, b in zip(neg_path, neg_path[1:])]
    edge_set = {tuple(e) for e in edges}

    def ok(a: int, b: int) -> bool:
        if (a, b) in edge_set or kinds[b] == "p" or a >= b or a in (target, neg):
            return False
        if (a in root_side) != (b in root_side) and (a in root_side or rng.random() > cross):
            return False
        dist = distances(n, edges + [[a, b]], root)
        return dist[neg] < 0 and dist[target] == hops

    def add(a: int, b: int) -> None:
        edges.append([a, b])
        edge_set.add((a, b))

    # Every concept needs a parent on its own side, every person a child.
    for v in concept_idx:
        if not any(b == v for _, b in edges):
            cands = [u for u in range(v) if (u in root_side) == (v in root_side) and ok(u, v)]
            if not cands:
                return None
            add(rng.choice(cands), v)
    for p in person_idx:
        if not any(a == p for a, _ in edges):
            cands = [v for v in concept_idx if v not in root_side and ok(p, v)]
            if not cands:
                return None
            add(p, rng.choice(cands))
    n_edges = round(n * edge_ratio * rng.uniform(0.85, 1.15))
    tries = 0
    while len(edges) < n_edges and tries < 20 * n_edges:
        tries += 1
        a, b = sorted(rng.sample(range(n), 2))
        if ok(a, b):
            add(a, b)
    names = rng.sample(PEOPLE, n_people)
    words = rng.sample(CONCEPTS, n_concepts)
    symbols = [names.pop() if k == "p" else words.pop() for k in kinds]
    return symbols, edges, root, target, neg


# "Is Tom a lempus or scrompus?" at the end of a question: (person, first option, second option)
QUESTION_RE = re.compile(r"Is ([A-Z][a-z]+) a ([a-z]+) or ([a-z]+)\?\s*$")
_EDGE_RE = re.compile(r"^(?:Every ([a-z]+)|([A-Z][a-z]+)) is a ([a-z]+)\.$")


def check_prosqa(row: dict[str, Any], where: str = "row") -> None:
    """Raise :class:`DataError` unless ``row`` (a dict in the released ProsQA JSON layout)
    satisfies every invariant of the format.

    Checked: nodes in topological order; people are exactly the nodes without a parent (2-6);
    one sentence per edge, in the right form; the question names root, target and neg_target
    with either order; the answer sentence; steps form a shortest root-to-target path of 3-6
    hops; neg_target unreachable from the root; target and neg_target are leaves (true of every
    released row).
    """
    def fail(msg: str) -> None:
        raise DataError(f"{where}: {msg}")

    for key in ("question", "answer", "steps", "idx_to_symbol", "edges", "root", "target",
                "neg_target"):
        if key not in row:
            fail(f"missing field '{key}'")
    sym: list[str] = row["idx_to_symbol"]
    n = len(sym)
    edges = [list(e) for e in row["edges"]]
    root, target, neg = row["root"], row["target"], row["neg_target"]
    if any(not (0 <= a < n and 0 <= b < n) for a, b in edges):
        fail("edge index out of range")
    if any(a >= b for a, b in edges):
        fail("nodes are not numbered in topological order (an edge goes backwards)")
    has_parent = {b for _, b in edges}
    people = [i for i in range(n) if i not in has_parent]
    if not 2 <= len(people) <= 6:
        fail(f"{len(people)} people (nodes with no parent); expected 2-6")
    if any(sym[p] not in PEOPLE for p in people) or any(
            sym[i] in PEOPLE for i in range(n) if i in has_parent):
        fail("people must be exactly the parentless nodes, and named as people")
    if root not in people:
        fail("root is not a person")
    sentences = [s.strip() + "." for s in row["question"].split("?")[0].split(".")[:-1]]
    q_last = row["question"].rsplit(".", 1)[-1].strip()
    if len(sentences) != len(edges):
        fail(f"{len(sentences)} sentences for {len(edges)} edges")
    expected = sorted(edge_sentence(sym[a], sym[b], a in people) for a, b in edges)
    if sorted(sentences) != expected:
        fail("the sentences do not state exactly the edges")
    for s in sentences:
        if not _EDGE_RE.match(s):
            fail(f"malformed sentence {s!r}")
    m = QUESTION_RE.fullmatch(q_last)
    if not m or m.group(1) != sym[root] or {m.group(2), m.group(3)} != {sym[target], sym[neg]}:
        fail(f"question {q_last!r} does not ask about root, target and neg_target")
    if row["answer"] != f"{sym[root]} is a {sym[target]}.":
        fail(f"answer {row['answer']!r} is not '{sym[root]} is a {sym[target]}.'")
    dist = distances(n, edges, root)
    if dist[neg] >= 0:
        fail("neg_target is reachable from the root")
    if any(a in (target, neg) for a, _ in edges):
        fail("target and neg_target must be leaves (no outgoing edge)")
    steps = row["steps"]
    if not 3 <= len(steps) <= 6 or len(steps) != dist[target]:
        fail(f"steps has {len(steps)} hops; shortest path is {dist[target]}, expected 3-6")
    node = root
    edge_set = {(a, b) for a, b in edges}
    for s in steps:
        em = _EDGE_RE.match(s)
        if not em:
            fail(f"malformed step {s!r}")
        src, dst = em.group(1) or em.group(2), em.group(3)
        if src != sym[node] or (node, sym.index(dst)) not in edge_set:
            fail(f"step {s!r} does not continue the path")
        node = sym.index(dst)
    if node != target:
        fail("steps do not end at the target")


def problem_to_row(p: Problem) -> dict[str, Any]:
    """The released JSON layout of a generated problem (for :func:`check_prosqa` and export)."""
    return {"question": p.question, "answer": p.gold, "steps": p.steps, **{
        k: p.meta[k] for k in ("idx_to_symbol", "edges", "root", "target", "neg_target")}}
