"""Scoring a model's stability on questions with gold answers, before and after consistency
training: greedy pass@1, sampled pass@1 and maj@k (k = all samples, T = 1), and the
consistent-but-wrong rate (questions whose majority answer is wrong yet holds at least
``confident`` of the samples: the stability gap's failure mode, which training for agreement
can make worse)."""
from __future__ import annotations

from dataclasses import dataclass

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine, generate_capped
from attractor.grading.grade import grade_question
from attractor.metrics.answers import bootstrap_ci, majority
from attractor.tasks.prompts import prompt_ids

# the columns of one scored question, and of the per-set means in eval.parquet
COLUMNS = ("greedy_correct", "pass@1", "maj@k", "consistent_wrong", "answered_share",
           "top1_share")


@dataclass
class Scored:
    """Per-question scores of one model on one question set (lists in question order)."""

    question_ids: list[str]
    columns: dict[str, list[float]]

    def mean(self, name: str) -> float:
        """Mean of a column over the questions."""
        vals = self.columns[name]
        return sum(vals) / len(vals) if vals else float("nan")


def score(model, tok, problems, *, samples: int, max_new_tokens: int, seed: int,
          confident: float, greedy_only: bool = False, grader: str = "auto",
          reading: str = "strict") -> Scored:
    """Greedy and sampled rollouts of every problem with ``model``, graded against gold in
    ``reading`` (strict: the task's answer format; flexible: the last number or option)."""
    flex = reading == "flexible"
    engine = HFEngine(model, tok)
    ids = [p.id for p in problems]
    prompts = [prompt_ids(p, tok) for p in problems]
    greedy = generate_capped(engine, ids, prompts, SamplingConfig(
        samples=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed), max_rows=256)
    cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for p, g in zip(problems, greedy):
        grade = grade_question([g[0].text], p.gold, p.kind, grader, question=p.question,
                               flexible=flex)[0]
        cols["greedy_correct"].append(float(grade.correct_flexible if flex else grade.correct))
    if greedy_only:
        return Scored(ids, {"greedy_correct": cols["greedy_correct"]})
    sampled = generate_capped(engine, ids, prompts, SamplingConfig(
        samples=samples, temperature=1.0, max_new_tokens=max_new_tokens, seed=seed),
        max_rows=256)
    for p, rolls in zip(problems, sampled):
        grades = grade_question([r.text for r in rolls], p.gold, p.kind, grader,
                                question=p.question, flexible=flex)
        classes = [g.answer_class_flexible if flex else g.answer_class for g in grades]
        oks = [bool(g.correct_flexible if flex else g.correct) for g in grades]
        correct_of = {c: ok for c, ok in zip(classes, oks) if c is not None}
        top, top_ok = majority(classes, correct_of)
        share = classes.count(top) / len(classes) if top is not None else 0.0
        cols["pass@1"].append(sum(oks) / len(grades))
        cols["maj@k"].append(float(top_ok))
        cols["consistent_wrong"].append(float(top is not None and not top_ok
                                              and share >= confident))
        cols["answered_share"].append(sum(c is not None for c in classes) / len(classes))
        cols["top1_share"].append(share)
    return Scored(ids, cols)


def paired_difference(before: Scored, after: Scored, name: str, seed: int = 0
                      ) -> tuple[float, float, float]:
    """Mean of ``after - before`` per question with a 95% bootstrap interval over questions."""
    return bootstrap_ci([a - b for a, b in zip(after.columns[name], before.columns[name])],
                        seed=seed)
