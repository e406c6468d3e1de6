"""Compute allocation under a token budget (``attractor sample --budget TOKENS``).

Every question first gets ``first_round`` samples. Then, batch after batch, one more sample goes to
each of the questions picked by the policy, until the budget is spent (the next batch is cut to
what the mean tokens per sample so far says the budget still affords), every question has
``--samples`` samples, or (adaptive) no question is unsettled:

- ``adaptive``: questions whose samples disagree get more; a question is *settled* when all its
  samples gave the same answer; the most unsettled (lowest top-1 share, then fewest samples)
  go first.
- ``uniform``: the same budget spread evenly: questions with the fewest samples go first.
- ``probe:PATH``: a saved early-token probe (``attractor probe``) scores every question on its
  first-round samples (the mean score of those it can judge); the questions it rates lowest
  (least stable, or least likely right, as the probe's target says) get the next samples first.
  The scores are stored in the run (``allocation/probe_scores.parquet``) when the first round
  is done, so a resumed run plans from the same scores.

The plan is a pure function of the rollouts already stored, so a killed run resumes exactly.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from attractor.errors import ConfigError

POLICIES = ("uniform", "adaptive")


@dataclass
class QuestionState:
    """What the planner knows about one question: its answer classes so far and their tokens."""

    classes: list[str | None]
    tokens: int
    score: float | None = None   # the probe's score (probe policy), None until known

    @property
    def count(self) -> int:
        return len(self.classes)

    def top1_share(self) -> float:
        """Share of samples holding the most common answer (no answer never leads)."""
        answered = [c for c in self.classes if c is not None]
        if not self.classes or not answered:
            return 0.0
        return Counter(answered).most_common(1)[0][1] / len(self.classes)


def check_allocation(policy: str, budget: int | None, first_round: int, samples: int) -> None:
    """Validate ``--allocate``, ``--budget`` and ``--first-round`` together."""
    if policy not in POLICIES and not (policy.startswith("probe:") and len(policy) > 6):
        raise ConfigError(f"--allocate must be one of {', '.join(POLICIES)} or probe:PATH, got "
                          f"{policy!r}")
    if budget is None:
        if policy != "uniform":
            raise ConfigError(f"--allocate {policy} needs --budget TOKENS")
        return
    if budget <= 0:
        raise ConfigError(f"--budget must be a positive number of tokens, got {budget}")
    if not 1 <= first_round <= samples:
        raise ConfigError(f"--first-round must be in [1, --samples={samples}], got {first_round}")


def next_batch(states: list[QuestionState], policy: str, budget: int, first_round: int,
               samples: int, max_rows: int) -> list[tuple[int, int, int]]:
    """The next requests ``(question index, first sample id, count)``; empty when done."""
    short = [(q, s.count, first_round - s.count) for q, s in enumerate(states)
             if s.count < first_round]
    if short:  # the first round, whole questions at a time
        out, rows = [], 0
        for q, first, count in short:
            if out and rows + count > max_rows:
                break
            out.append((q, first, count))
            rows += count
        return out
    made = sum(s.count for s in states)
    spent = sum(s.tokens for s in states)
    per_sample = max(1.0, spent / made) if made else 1.0
    affordable = int((budget - spent) // per_sample)
    if affordable <= 0:
        return []
    open_q = [q for q, s in enumerate(states) if s.count < samples]
    if policy == "adaptive":
        open_q = [q for q in open_q if states[q].top1_share() < 1.0]
        open_q.sort(key=lambda q: (states[q].top1_share(), states[q].count, q))
    elif policy.startswith("probe:"):
        def key(q: int) -> tuple:
            sc = states[q].score
            return (sc if sc is not None and sc == sc else float("inf"), states[q].count, q)
        open_q.sort(key=key)
    else:
        open_q.sort(key=lambda q: (states[q].count, q))
        least = states[open_q[0]].count if open_q else 0
        open_q = [q for q in open_q if states[q].count == least]  # one round at a time
    return [(q, states[q].count, 1) for q in open_q[:min(affordable, max_rows)]]
