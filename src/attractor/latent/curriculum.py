"""The Coconut curriculum: at stage k the first k CoT steps of an example are replaced by
k * c continuous thoughts; at the last stage every step is latent. The model is then trained on
the remaining steps and the answer (``steps ... ### answer``)."""
from __future__ import annotations

import random
from dataclasses import dataclass

from attractor.errors import DataError
from attractor.tasks.problem import Problem

ANSWER_MARK = "###"


@dataclass
class Example:
    """One training example at one stage: prompt ids, thoughts, target ids."""

    prompt: list[int]
    thoughts: int
    target: list[int]


def check_steps(problems: list[Problem], source: str) -> None:
    """Training needs CoT steps: refuse a task without them (one line naming it)."""
    missing = [p.id for p in problems if not p.steps]
    if missing:
        raise DataError(f"{source}: {len(missing)} of {len(problems)} questions have no CoT "
                        f"steps (first: {missing[0]}); latent training needs a task with steps")


def target_text(p: Problem, k: int, final_stage: bool) -> str:
    """The text after the thoughts at stage ``k``: remaining steps, ``###``, the answer."""
    rest = [] if final_stage else list(p.steps[k:])
    return " " + " ".join(rest + [ANSWER_MARK, p.gold])


def stage_of(stage: int, mix: float, rng: random.Random) -> int:
    """The stage an example is trained at: ``stage``, or with probability ``mix`` an earlier one
    (Coconut's optional mixing of stages)."""
    if stage > 0 and mix > 0 and rng.random() < mix:
        return rng.randrange(stage)
    return stage


def build_example(p: Problem, prompt: list[int], tok, stage: int, stages: int, per_step: int
                  ) -> Example:
    """The example of ``p`` at ``stage`` (0 = plain CoT) with ``per_step`` thoughts per step."""
    k = min(stage, len(p.steps))
    final = stage >= stages
    if final:
        k = len(p.steps)
    target = tok(target_text(p, k, final), add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    return Example(prompt, k * per_step, target + ([eos] if isinstance(eos, int) else []))
