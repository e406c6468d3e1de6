"""Online early stopping in the hf engine (``attractor sample --early-stop RULE``).

Rules, written ``NAME:key=value,...``:

- ``deepconf:warmup=W,percentile=P,window=K``: DeepConf's online rule. Samples ``0..W-1`` of a
  question run in full; the threshold is the P-th percentile of their lowest group confidences
  (sliding window of K tokens); every later sample stops at the first token whose window
  confidence falls below it (``finish_reason = "early_stop"``) and never votes. The same rule
  replayed offline on a full run (``attractor early-stop``) spends the same tokens.
  ``attractor analyze`` then votes as DeepConf does (:mod:`attractor.scaling.deepconf`): warm-up
  samples below the threshold do not vote, every voter weighs its lowest group confidence.
- ``probe:PATH,threshold=T``: a saved early-token probe (``attractor probe``) scores each trace
  once it has the probe's N completion tokens; a trace scoring below T stops there and never
  votes (:mod:`attractor.probes.online`). ``attractor early-stop RUN --probe PATH`` replays it on
  a full run and predicts the tokens it spends.
- ``consensus:min_traces=M,share=S``: samples are made one after another (batched across
  questions); once a question has at least M samples and its leading answer holds a share S of
  them, its remaining samples are never started (recorded as ``early_stop`` with no tokens).

A cut sample keeps its partial text but gets no answer, so it never votes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


from attractor.engines.base import Rollout
from attractor.errors import ConfigError
from attractor.scaling import deepconf

RULE_KEYS = {"deepconf": {"warmup": int, "percentile": float, "window": int},
             "consensus": {"min_traces": int, "share": float},
             "probe": {"path": str, "threshold": float}}


@dataclass(frozen=True)
class OnlineRule:
    """A parsed ``--early-stop`` rule."""

    name: str
    params: dict

    def __str__(self) -> str:
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())


def parse_rule(spec: str, samples: int) -> OnlineRule:
    """Parse and validate ``--early-stop`` (ConfigError naming the problem)."""
    name, _, rest = spec.partition(":")
    if name not in RULE_KEYS:
        raise ConfigError(f"--early-stop {spec!r}: unknown rule {name!r}; expected one of "
                          f"{', '.join(RULE_KEYS)} (e.g. deepconf:warmup=4,percentile=90,window=64)")
    want = RULE_KEYS[name]
    params: dict = {}
    parts = list(filter(None, rest.split(",")))
    if name == "probe" and parts and "=" not in parts[0]:  # probe:PATH,threshold=T
        params["path"] = parts.pop(0)
    for part in parts:
        key, eq, val = part.partition("=")
        if not eq or key not in want:
            raise ConfigError(f"--early-stop {spec!r}: bad setting {part!r}; {name} takes "
                              f"{', '.join(k + '=...' for k in want)}")
        try:
            params[key] = want[key](val)
        except ValueError:
            raise ConfigError(f"--early-stop {spec!r}: {key} must be {want[key].__name__}, "
                              f"got {val!r}") from None
    missing = [k for k in want if k not in params]
    if missing:
        raise ConfigError(f"--early-stop {spec!r}: missing {', '.join(missing)}")
    if name == "probe":
        import math

        if not math.isfinite(params["threshold"]) or not 0 <= params["threshold"] <= 1:
            raise ConfigError(f"--early-stop {spec!r}: threshold must be a probability in "
                              f"[0, 1], got {params['threshold']}")
    elif name == "deepconf":
        if not 1 <= params["warmup"] < samples:
            raise ConfigError(f"--early-stop: warmup must be in [1, --samples), got "
                              f"{params['warmup']} with --samples {samples}")
        if not 0 <= params["percentile"] <= 100 or params["window"] <= 0:
            raise ConfigError("--early-stop: percentile must be in [0, 100] and window > 0")
    else:
        if not 1 <= params["min_traces"] <= samples or not 0 < params["share"] <= 1:
            raise ConfigError("--early-stop: min_traces must be in [1, --samples] and share in "
                              "(0, 1]")
    return OnlineRule(name, {k: params[k] for k in want})


def deepconf_threshold(warm: list[Rollout], percentile: float, window: int) -> float | None:
    """The P-th percentile of the warm-up samples' lowest group confidences (None if none)."""
    return deepconf.threshold([r.token_confidences for r in warm], percentile, window)


def not_started(template: Rollout, sample_id: int, seed: int) -> Rollout:
    """The record of a sample the consensus rule never started."""
    return Rollout(question_id=template.question_id, sample_id=sample_id, seed=seed,
                   prompt_token_ids=list(template.prompt_token_ids), completion_token_ids=[],
                   text="", finish_reason="early_stop")


def sample_with_rule(engine, question_ids: list[str], prompts: list[list[int]], cfg,
                     rule: OnlineRule,
                     classify: Callable[[int, list[str]], list[str | None]],
                     probe_stop=None) -> list[list[Rollout]]:
    """Sample one chunk of questions under ``rule``; ``classify(question_index, texts)`` gives
    answer classes (used by ``consensus``), ``probe_stop`` is the loaded probe rule (used by
    ``probe``). Returns ``cfg.samples`` rollouts per question."""
    n = cfg.samples
    if rule.name == "probe":
        return engine.generate(question_ids, prompts, cfg, probe_stop=probe_stop)
    if rule.name == "deepconf":
        w = rule.params["warmup"]
        warm = engine.generate(question_ids, prompts, cfg, first_sample=0, count=w)
        thr = [deepconf_threshold(g, rule.params["percentile"], rule.params["window"])
               for g in warm]
        rest = engine.generate(question_ids, prompts, cfg, first_sample=w, count=n - w,
                               cut_below=thr, window=rule.params["window"])
        return [a + b for a, b in zip(warm, rest)]
    m, share = rule.params["min_traces"], rule.params["share"]
    groups = engine.generate(question_ids, prompts, cfg, first_sample=0, count=m)
    closed: set[int] = set()
    for i in range(m, n):
        closed |= {q for q, g in enumerate(groups) if q not in closed
                   and _settled(classify(q, [r.text for r in g]), share)}
        open_q = [q for q in range(len(groups)) if q not in closed]
        for q in closed:
            groups[q].append(not_started(groups[q][0], i, cfg.seed + i))
        if open_q:
            more = engine.generate([question_ids[q] for q in open_q], [prompts[q] for q in open_q],
                                   cfg, first_sample=i, count=1)
            for q, g in zip(open_q, more):
                groups[q].extend(g)
    return groups


def _settled(classes: list[str | None], share: float) -> bool:
    answers = [c for c in classes if c is not None]
    if not answers:
        return False
    top = max(answers.count(a) for a in set(answers))
    return top / len(classes) >= share
