"""The Coconut curriculum: at stage k the first k CoT steps of an example are replaced by
k * c continuous thoughts; at the last stage every step is latent and the example gets the full
T = stages * c thoughts (the count the loop runs at inference). The model is trained on the
text after the thoughts: the remaining steps and the answer (``steps ... ### answer``).

Two baselines train on the same data (Coconut's table has both): ``cot`` (stage 0 only: the
model fine-tuned on the full chain of thought) and ``no-cot`` (the answer right after the
question, no thoughts).

The steps are the task's own (``cot_format="task"``) or the backward proof the embedded tiny
model writes on ProsQA (``"backward-proof"``: one node name per step), so a curriculum that
starts from that model starts from the chain it already knows; on ProntoQA the same format is
:mod:`attractor.tasks.prontoqa_proof` (one concept per step, learnt with ``--method cot``), and
``"backward-sentences"`` is either proof written in the question's own sentences (one premise per
step, as the ProntoQA and Coconut chains of thought are: a step is a sentence).
``"backward-proof-first"`` is the one-name proof with no random draws on ProsQA: where a
concept has several parents the chain takes the one stated first in the question, so the text
a stage leaves after its thoughts is a function of the question (ProntoQA's proof has no draws
and is the same in both formats).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from attractor.errors import ConfigError, DataError
from attractor.tasks.problem import ANSWER_MARK, Problem

COT_FORMATS = ("task", "backward-proof", "backward-proof-first", "backward-sentences")
BASELINES = ("cot", "no-cot")
DIRECT = -1  # the no-cot "stage": no thoughts, no steps


@dataclass
class Example:
    """One training example at one stage: prompt ids, thoughts, target ids."""

    prompt: list[int]
    thoughts: int
    target: list[int]
    # per thought, the token its state should name under the logit lens (-100: none); see
    # :func:`thought_targets`
    lens: list[int] = field(default_factory=list)


def check_steps(problems: list[Problem], source: str) -> None:
    """Training needs CoT steps: refuse a task without them (one line naming it)."""
    missing = [p.id for p in problems if not p.steps]
    if missing:
        raise DataError(f"{source}: {len(missing)} of {len(problems)} questions have no CoT "
                        f"steps (first: {missing[0]}); latent training needs a task with steps")


def cot_steps(problems: list[Problem], cot_format: str, seed: int) -> list[list[str]]:
    """The CoT steps the curriculum replaces, per problem."""
    if cot_format == "task":
        return [list(p.steps) for p in problems]
    if cot_format not in COT_FORMATS:
        raise ConfigError(f"--cot-format must be one of {', '.join(COT_FORMATS)}, "
                          f"got {cot_format!r}")
    sentences = cot_format == "backward-sentences"
    first = cot_format == "backward-proof-first"
    return [_backward_proof(p, seed, sentences, first) for p in problems]


def _prontoqa_steps(p: Problem, sentences: bool) -> list[str]:
    """A ProntoQA problem's backward proof (one name or one sentence per step), refused when it
    does not prove the gold answer."""
    from attractor.tasks.prontoqa_proof import prontoqa_backward_proof, prontoqa_sentence_proof

    steps, answer = (prontoqa_sentence_proof if sentences else prontoqa_backward_proof)(p)
    if answer != p.gold:
        raise DataError(f"{p.id}: the backward proof gives {answer}, the gold answer is {p.gold}")
    return steps


def _backward_proof(p: Problem, seed: int, sentences: bool = False,
                    first_stated: bool = False) -> list[str]:
    """The tiny model's backward proof of one ProsQA (graph in ``meta``) or ProntoQA problem,
    one name per step or (``sentences``) one of the question's sentences per step;
    ``first_stated``: ProsQA parents are the first stated, not drawn."""
    if p.kind == "prontoqa":
        return _prontoqa_steps(p, sentences)
    from attractor.tasks.prosqa_proof import backward_proof, backward_sentence_proof

    if not {"edges", "root", "target"} <= set(p.meta or {}):
        fmt = ("backward-sentences" if sentences else "backward-proof-first" if first_stated
               else "backward-proof")
        raise DataError(f"--cot-format {fmt} needs ProsQA graphs or ProntoQA questions; "
                        f"{p.id} is neither")
    rng = random.Random(f"{seed}:{p.id}")
    if sentences:
        return backward_sentence_proof(p, rng)
    return backward_proof(p, rng, first_stated=first_stated)


def target_text(steps: list[str], gold: str, k: int) -> str:
    """The text after the thoughts once the first ``k`` steps are latent."""
    return " " + " ".join(list(steps[k:]) + [ANSWER_MARK, gold])


def stage_of(stage: int, mix: float, rng: random.Random) -> int:
    """The stage an example is trained at: ``stage``, or with probability ``mix`` an earlier one
    (Coconut's optional mixing of stages)."""
    if stage > 0 and mix > 0 and rng.random() < mix:
        return rng.randrange(stage)
    return stage


def thoughts_at(stage: int, stages: int, per_step: int, n_steps: int | None = None) -> int:
    """Thoughts at ``stage``: none for ``DIRECT``, ``stages * per_step`` at the last stage, else
    ``k * per_step`` for the ``k = stage`` first steps (capped at ``n_steps`` when given)."""
    if stage == DIRECT:
        return 0
    if stage >= stages:
        return stages * per_step
    return (stage if n_steps is None else min(stage, n_steps)) * per_step


def thought_targets(steps: list[str], thoughts: int, per_step: int, tok) -> list[int]:
    """What the logit lens of each fed-back state should name (``--thought-loss``): the state
    fed as thought ``j * c`` is the one that, in the chain of thought, predicts step ``j``, so it
    is pointed at that step's first token, and the state after the last step at the answer
    marker ``###`` (what the chain of thought writes there; ``halting=token`` stops on it). The
    other ``c - 1`` thoughts of a step, and thoughts past the marker, are free (-100)."""
    out = [-100] * thoughts
    for j, step in enumerate(list(steps) + [ANSWER_MARK]):
        if j * per_step >= thoughts:
            break
        out[j * per_step] = tok(" " + step, add_special_tokens=False)["input_ids"][0]
    return out


def build_example(steps: list[str], gold: str, prompt: list[int], tok, stage: int, stages: int,
                  per_step: int, lens: bool = False) -> Example:
    """The example at ``stage`` (0 = plain CoT, ``DIRECT`` = answer only) with ``per_step``
    thoughts per replaced step; the last stage gets all ``stages * per_step`` thoughts.
    ``lens`` adds the thoughts' logit-lens targets (:func:`thought_targets`)."""
    k = len(steps) if stage == DIRECT or stage >= stages else min(stage, len(steps))
    thoughts = thoughts_at(stage, stages, per_step, len(steps))
    target = tok(target_text(steps, gold, k), add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    return Example(prompt, thoughts, target + ([eos] if isinstance(eos, int) else []),
                   thought_targets(steps, thoughts, per_step, tok) if lens else [])
