"""Multi-step integer arithmetic word problems, seeded and reproducible."""
from __future__ import annotations

import random

from attractor.tasks.problem import Problem

_OPS = [("Add", "+"), ("Subtract", "-"), ("Multiply by", "*")]


def generate_arith(n: int, seed: int = 0, steps: int = 3, max_operand: int = 9,
                   start: int = 0) -> list[Problem]:
    """Generate ``n`` problems "Start with a. Add b. Multiply by c. ..." with ``steps`` operations.

    Steps are the intermediate equations ("7 + 5 = 12."); the answer is the final integer.
    Problem ``i`` is drawn from ``random.Random(f"arith:{seed}:{i}")``.
    """
    if steps < 1 or max_operand < 2:
        raise ValueError("arith needs steps >= 1 and max_operand >= 2")
    out = []
    for i in range(start, start + n):
        rng = random.Random(f"arith:{seed}:{i}")
        value = rng.randint(1, max_operand)
        words = [f"Start with {value}."]
        chain = []
        for _ in range(steps):
            word, sym = rng.choice(_OPS)
            b = rng.randint(2, max_operand)
            new = value + b if sym == "+" else value - b if sym == "-" else value * b
            words.append(f"{word} {b}.")
            chain.append(f"{value} {sym} {b} = {new}.")
            value = new
        question = " ".join(words) + " What is the result?"
        out.append(Problem(id=f"arith-{seed}-{i}", question=question, gold=str(value),
                           steps=chain, kind="arith", meta={"hops": steps}))
    return out
