"""A saved probe used while sampling or replayed on a stored run.

- :class:`ProbeStop` is ``sample --early-stop probe:PATH,threshold=T``: once a trace has N
  completion tokens (N is the probe's own; N = 0 is the prompt's last token, before any token),
  its layer-l state is scored, and a trace scoring below T stops there (``early_stop``, no vote).
  Traces that ended before N tokens, or whose first N tokens already hold the answer marker,
  are not judged (the probe never saw such prefixes).
- :func:`trace_scores` scores stored rollouts the same way (teacher-forced re-forward), for the
  offline replay (``attractor early-stop RUN --probe PATH``) and for ``--allocate probe:PATH``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attractor.errors import ConfigError, UserError
from attractor.probes.features import FeatureSet, collect, prefix_ok
from attractor.probes.model import Probe


def load_for_model(path: str, model, weights_sha256: str | None, max_new_tokens: int | None,
                   option: str) -> Probe:
    """A probe file checked against the model it will read (weights, hidden size, layers) and
    the token budget (N must be below it)."""
    probe = Probe.load(path, weights_sha256)
    meta = probe.meta
    for key in ("layer", "n_tokens"):
        if key not in meta:
            raise UserError(f"{option} {path}: the probe has no '{key}' in its metadata")
    hidden, layers = int(model.config.hidden_size), int(model.config.num_hidden_layers)
    if len(probe.mean) != hidden or int(meta["layer"]) > layers:
        raise UserError(f"{option} {path}: the probe reads layer {meta['layer']} of a "
                        f"{len(probe.mean)}-dim model, this model has {layers} layers of "
                        f"{hidden} dims")
    if max_new_tokens is not None and int(meta["n_tokens"]) >= max_new_tokens:
        raise ConfigError(f"{option} {path}: the probe reads {meta['n_tokens']} tokens, not "
                          f"below --max-new-tokens {max_new_tokens}")
    return probe


@dataclass
class ProbeStop:
    """The online rule: ``probe`` at its layer and N, cut below ``threshold``."""

    probe: Probe
    threshold: float
    tokenizer: object

    @property
    def layer(self) -> int:
        return int(self.probe.meta["layer"])

    @property
    def n_tokens(self) -> int:
        return int(self.probe.meta["n_tokens"])

    def judged(self, completion_ids: list[int]) -> bool:
        """Whether a trace with these tokens so far is scored (N reached, no answer yet)."""
        return prefix_ok(self.tokenizer, completion_ids, self.n_tokens) is None

    def cut(self, states: np.ndarray) -> np.ndarray:
        """Which rows of states ``(rows, d)`` score below the threshold."""
        return self.probe.score(states) < self.threshold


def trace_scores(model, tokenizer, questions, probe: Probe, max_tokens: int = 16384
                 ) -> dict[tuple[str, int], float]:
    """Probe score of every stored rollout whose first N tokens exist and hold no answer
    (``questions``: mechanism :class:`RunQuestion` objects)."""
    layer, n = int(probe.meta["layer"]), int(probe.meta["n_tokens"])
    fs = FeatureSet()
    collect(model, tokenizer, questions, [layer], [n], fs, max_tokens)
    if not fs.n_tokens:
        return {}
    x = np.concatenate(fs.hidden[layer])
    s = probe.score(x)
    return {(q, int(i)): float(v) for q, i, v in zip(fs.question_id, fs.sample_id, s)}


def question_scores(model, tokenizer, store, problems, probe: Probe, first_round: int,
                    max_tokens: int = 16384) -> dict[str, float]:
    """Per question: the mean probe score of its first ``first_round`` stored samples that the
    probe can judge (NaN when none)."""
    from attractor.run_model import RunQuestion, RunRollout

    df = store.rollouts(["question_id", "sample_id", "prompt_token_ids", "completion_token_ids",
                         "text", "answer_class"])
    df = df[df["sample_id"] < first_round]
    by_q = {qid: g for qid, g in df.groupby("question_id", sort=False)}
    questions = []
    for p in problems:
        g = by_q.get(p.id)
        if g is None:
            continue
        rolls = [RunRollout(p.id, int(r.sample_id), list(map(int, r.prompt_token_ids)),
                         list(map(int, r.completion_token_ids)), r.text or "", False, None)
                 for r in g.itertuples(index=False)]
        questions.append(RunQuestion(p, rolls, 0.0, False, False))
    scores = trace_scores(model, tokenizer, questions, probe, max_tokens)
    out = {}
    for q in questions:
        vals = [scores[(q.problem.id, r.sample_id)] for r in q.rollouts
                if (q.problem.id, r.sample_id) in scores]
        out[q.problem.id] = float(np.mean(vals)) if vals else float("nan")
    return out
