"""A run opened with its model (for the mechanism commands, probes, steering and early stop): its model (checked against the run's weights), its
question-level stability labels, and its rollouts streamed a few questions at a time.

Stability labels come from the rollouts' grades: a question is *stable* when its top-1 answer
share is above the run's median (at or above it when nothing is above it), and it has a *right
majority* when its plurality answer is correct; the same definitions as ``analyze``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from attractor.errors import UserError
from attractor.store.environment import command_line, now
from attractor.store.parts import PartTable
from attractor.store.run_store import open_run
from attractor.tasks.problem import Problem

CHEAP = ["question_id", "sample_id", "answer_class", "correct", "finish_reason", "n_tokens"]
TOKENS = ["question_id", "sample_id", "prompt_token_ids", "completion_token_ids", "text",
          "correct", "answer_class"]
FLEXIBLE = ["correct_flexible", "answer_class_flexible"]


@dataclass
class RunRollout:
    """One rollout as the mechanism commands read it."""

    question_id: str
    sample_id: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    correct: bool
    answer_class: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


@dataclass
class RunQuestion:
    """One question with its rollouts and its stability labels."""

    problem: Problem
    rollouts: list[RunRollout]
    top1_share: float
    stable: bool
    majority_correct: bool
    extra: dict[str, Any] = field(default_factory=dict)


def stability_labels(cheap: pd.DataFrame) -> pd.DataFrame:
    """question_id, top1_share, stable, majority_correct of every question of a run."""
    from attractor.metrics.questions import per_question

    if cheap["correct"].isna().all():
        raise UserError("the rollouts are not graded; run 'attractor analyze' on the run first")
    q = per_question(cheap)[["question_id", "top1_share", "majority_correct"]].copy()
    med = float(np.median(q["top1_share"]))
    stable = q["top1_share"] > med
    if not stable.any():
        stable = q["top1_share"] >= med
    q["stable"] = stable
    return q


class MechanismRun:
    """An existing run, its model and the resumable table one command writes."""

    def __init__(self, run: str, stage: str, model: str | None = None, device: str = "auto",
                 dtype: str = "auto", attn_implementation: str | None = None,
                 writes: bool = True) -> None:
        store = open_run(run, writes=writes)
        m = store.manifest
        spec = model or m.model_spec
        if spec is None:
            raise UserError(f"{run}: imported rollouts have no model; pass --model")
        from attractor.models.load import load, weights_sha256

        sha = weights_sha256(spec)
        if m.weights_sha256 and sha and sha != m.weights_sha256:
            raise UserError(f"--model {spec}: weights differ from the run's model "
                            f"({m.model_spec}, sha256 {m.weights_sha256[:12]}...); the analysis "
                            "must use the model that made the rollouts")
        self.store, self.stage, self.spec, self.sha = store, stage, spec, sha
        self.run = run
        # the answer reading the run's metrics use (sample --reading): labels, correctness and
        # decisive tokens follow it
        self.reading = (m.config or {}).get("reading", "strict")
        try:
            cheap = store.rollouts(CHEAP + FLEXIBLE if self.reading == "flexible" else CHEAP)
            if self.reading == "flexible":
                from attractor.metrics.questions import reading_view

                cheap = reading_view(cheap, "flexible")
            self.labels = stability_labels(cheap)
        except UserError as err:
            raise UserError(f"{run}: {err}") from None
        self.problems = {p.id: p for p in store.questions()}
        self.model, self.tokenizer = load(spec, dtype=dtype, device=device,
                                          attn_implementation=attn_implementation)
        self.attn_implementation = attn_implementation

    @property
    def device(self):
        return next(self.model.parameters()).device

    def table(self, name: str) -> PartTable:
        """A resumable table ``metrics/NAME.parquet`` of this run."""
        return PartTable(self.store.sub("metrics"), name)

    def begin(self, setup: dict[str, Any], tables: list[PartTable]) -> set[str]:
        """Record the stage as running; refuse settings that differ from a stage already begun
        (its tables would mix two setups). Returns the questions already done."""
        previous = self.store.manifest.stage(self.stage)
        setup = {"model": self.spec, "weights_sha256": self.sha, **setup}
        if previous and any(t.final.exists() or t.parts() for t in tables):
            for key, value in setup.items():
                if key != "model" and key in previous and previous[key] != value:
                    raise UserError(f"{self.run}: 'attractor {self.stage}' ran with "
                                    f"{key}={previous[key]}, "
                                    f"this command has {value}; remove "
                                    f"{self.run}/metrics/{tables[0].name}* to start anew")
        for t in tables:
            t.open()
        done = tables[0].done_questions()
        for t in tables[1:]:
            done &= t.done_questions()
        self.store.update_stage(self.stage, status="running", started=now(),
                                command=command_line(), **setup)
        return done

    def finish(self, tables: list[PartTable], **fields: Any) -> dict[str, pd.DataFrame]:
        """Merge the tables and record the stage as done."""
        order = list(self.problems)
        out = {t.name: t.merge(order) for t in tables}
        self.store.update_stage(self.stage, status="done", finished=now(), **fields)
        return out

    def questions(self, skip: set[str], chunk: int = 8, extra: tuple[str, ...] = ()
                  ) -> Iterator[list[RunQuestion]]:
        """Questions not in ``skip``, ``chunk`` at a time, each with its rollouts (read from the
        shards for that chunk only), in the run's question order; ``extra`` rollout columns go
        into each rollout's ``extra``."""
        labels = self.labels.set_index("question_id")
        todo = [q for q in labels.index if q not in skip]
        shards = self.store.rollout_shards()
        for i in range(0, len(todo), chunk):
            ids = todo[i:i + chunk]
            cols = TOKENS + (FLEXIBLE if self.reading == "flexible" else []) + list(extra)
            frames = [pq.read_table(s, columns=cols, filters=[("question_id", "in", ids)])
                      .to_pandas() for s in shards]
            df = pd.concat(frames, ignore_index=True).sort_values(["question_id", "sample_id"])
            groups = {q: sub for q, sub in df.groupby("question_id", sort=False)}
            out = []
            for q in ids:
                if q not in groups:
                    continue
                rolls = [self._rollout(r, extra) for r in groups[q].itertuples(index=False)]
                lab = labels.loc[q]
                out.append(RunQuestion(self.problems[q], rolls, float(lab["top1_share"]),
                                    bool(lab["stable"]), bool(lab["majority_correct"])))
            yield out

    def _rollout(self, r, extra: tuple[str, ...] = ()) -> RunRollout:
        tok = self.tokenizer
        if r.completion_token_ids is None:
            from attractor.tasks.prompts import prompt_ids

            p_ids = prompt_ids(self.problems[r.question_id], tok)
            c_ids = tok(r.text or "", add_special_tokens=False)["input_ids"]
        else:
            p_ids, c_ids = list(map(int, r.prompt_token_ids)), list(map(int,
                                                                        r.completion_token_ids))
        flex = self.reading == "flexible"
        ac = r.answer_class_flexible if flex else r.answer_class
        ok = r.correct_flexible if flex else r.correct
        return RunRollout(r.question_id, int(r.sample_id), p_ids, c_ids, r.text or "",
                       bool(ok) if ok is not None and ok == ok else False,
                       ac if isinstance(ac, str) else None, {k: getattr(r, k) for k in extra})

    def decisive(self, question: RunQuestion, r: RunRollout) -> int | None:
        """The completion index before ``r``'s decisive token, in the run's reading."""
        from attractor.capture.decisive import decisive_token_index

        return decisive_token_index(self.tokenizer, r.completion_ids, r.text,
                                    question.problem.kind, self.reading,
                                    question.problem.question)
