"""Multi-step integer arithmetic word problems, seeded and reproducible."""
from __future__ import annotations

import random

from attractor.tasks.problem import Problem

_OPS = [("Add", "+"), ("Subtract", "-"), ("Multiply by", "*")]


STYLES = ("words", "expr")


def generate_arith(n: int, seed: int = 0, steps: int = 3, max_operand: int = 9,
                   start: int = 0, style: str = "words") -> list[Problem]:
    """Generate ``n`` problems with ``steps`` operations on integers up to ``max_operand``.

    ``style="words"`` (the embedded model's training format): "Start with a. Add b. Multiply by
    c. What is the result?"; ``style="expr"``: the same operations as one expression, "What is
    (a + b) * c?", the form a pretrained instruct model reads (SmolLM2-135M misreads the words
    form). Steps are the intermediate equations ("7 + 5 = 12."); the answer is the final
    integer. Problem ``i`` is drawn from ``random.Random(f"arith:{seed}:{i}")`` in either style,
    so both styles ask the same questions.
    """
    if steps < 1 or max_operand < 2:
        raise ValueError("arith needs steps >= 1 and max_operand >= 2")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    out = []
    for i in range(start, start + n):
        rng = random.Random(f"arith:{seed}:{i}")
        value = rng.randint(1, max_operand)
        words = [f"Start with {value}."]
        expr = str(value)
        chain = []
        for _ in range(steps):
            word, sym = rng.choice(_OPS)
            b = rng.randint(2, max_operand)
            new = value + b if sym == "+" else value - b if sym == "-" else value * b
            words.append(f"{word} {b}.")
            expr = f"{expr} {sym} {b}" if not chain else f"({expr}) {sym} {b}"
            chain.append(f"{value} {sym} {b} = {new}.")
            value = new
        question = (" ".join(words) + " What is the result?" if style == "words"
                    else f"What is {expr}?")
        out.append(Problem(id=f"arith-{seed}-{i}", question=question, gold=str(value),
                           steps=chain, kind="arith", meta={"hops": steps, "style": style}))
    return out
