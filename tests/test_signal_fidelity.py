"""Every stability signal against an independent implementation of its paper's formula, written
here from the reference code (never imported from attractor):

- Latent-Trajectory signals: martinagvilas/LT-signals, compute_lt_signals;
- DeepConf: facebookresearch/deepconf, compute_confidence, filter_top_confidence,
  weighted_majority_vote, _perform_basic_voting (online mode);
- AUROC: scikit-learn's roc_auc_score; intervals checked for coverage on noise.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from attractor.engines.confidence import confidence_from_logits, confidence_from_logprobs
from attractor.engines.vllm_engine import rollout_from_completion
from attractor.metrics.auroc import auroc, bootstrap_auroc, weighted_auroc
from attractor.metrics.confidence import deepconf_signals
from attractor.metrics.signals import signal_table
from attractor.metrics.trajectory import layer_average, trajectory_signals
from attractor.scaling.early_stop import Trace, deepconf_rule
from attractor.scaling.vote import VoteQuestion, signal_weigher, vote_correct


# ---------------------------------------------------------------- Latent-Trajectory signals
def lt_oracle(h: np.ndarray) -> dict[str, float]:
    """The paper's three signals, step by step, with torch's cosine as the reference uses."""
    H = torch.tensor(h, dtype=torch.float64)
    drift = H[-1] - H[0]
    steps = [H[n] - H[n - 1] for n in range(1, len(H))]
    S = len(steps)
    cos = [torch.nn.functional.cosine_similarity(st, drift, dim=0).item() for st in steps]
    return {"net_change": drift.norm().item() / S,
            "cumulative_change": sum(st.norm().item() for st in steps),
            "aligned_change": sum(cos) / S}


def test_trajectory_signals_equal_the_reference_formula():
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 12):
        h = rng.normal(size=(n, 16)).cumsum(0)
        got, want = trajectory_signals(h), lt_oracle(h)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), (n, k)


def test_aligned_change_is_alignment_with_the_drift_not_between_steps():
    # a zig-zag that drifts steadily: consecutive steps are orthogonal (cosine 0, the old
    # quantity) while every step makes 45 degrees with the drift
    h = np.array([[0.0, 0], [1, 1], [2, 0], [3, 1], [4, 0]])
    s = trajectory_signals(h)
    assert s["aligned_change"] == pytest.approx(np.sqrt(0.5))
    assert s["net_change"] == pytest.approx(1.0)  # ||(4, 0)|| over 4 steps: not a length proxy
    assert s["cumulative_change"] == pytest.approx(4 * np.sqrt(2))


def test_net_change_does_not_grow_with_length():
    short = np.array([[0.0], [1.0], [2.0]])
    long = np.arange(20, dtype=float)[:, None]
    assert trajectory_signals(short)["net_change"] == trajectory_signals(long)["net_change"]


def test_layer_average_leaves_out_the_embedding_layer():
    per_layer = {0: {"net_change": 100.0, "cumulative_change": 100.0, "aligned_change": 1.0},
                 1: {"net_change": 1.0, "cumulative_change": 2.0, "aligned_change": 0.5},
                 2: {"net_change": 3.0, "cumulative_change": 4.0, "aligned_change": float("nan")}}
    avg = layer_average(per_layer)
    assert avg == {"net_change": 2.0, "cumulative_change": 3.0, "aligned_change": 0.5}


# ---------------------------------------------------------------- DeepConf confidences
def deepconf_bottom_window(confs: list[float], window: int, bottom: float = 0.1) -> float:
    """calculate_bottom_window_confidence of the reference."""
    if len(confs) < window:
        return float(np.mean(confs))
    means = [np.mean(confs[i:i + window]) for i in range(len(confs) - window + 1)]
    k = max(1, int(len(means) * bottom))
    return float(np.mean(sorted(means)[:k]))


def test_deepconf_trace_signals_equal_the_reference():
    rng = np.random.default_rng(1)
    for n, window, tail in ((30, 4, 7), (57, 10, 2048), (5, 8, 3), (250, 16, 40)):
        c = rng.uniform(0.5, 6, size=n)
        s = deepconf_signals(c, window=window, tail=tail)
        assert s["conf_bottom10"] == pytest.approx(deepconf_bottom_window(list(c), window))
        assert s["conf_tail"] == pytest.approx(np.mean(c[-tail:]))
        assert s["conf_mean"] == pytest.approx(np.mean(c))
        lows = ([np.mean(c[i:i + window]) for i in range(n - window + 1)] if n >= window
                else [np.mean(c)])
        assert s["conf_lowest_group"] == pytest.approx(min(lows))


def test_bottom_ten_percent_floors_as_the_reference():
    # 19 groups: the reference keeps int(1.9) = 1 group, a ceil would keep 2
    c = np.array([1.0] + [5.0] * 18 + [3.0])
    assert deepconf_signals(c, window=2)["conf_bottom10"] == pytest.approx(3.0)


def reference_token_confidence(raw_logprobs: np.ndarray, chosen: int, k: int = 20) -> float:
    """vLLM returns the top-k raw log-probabilities plus the sampled token when it is outside
    them; DeepConf takes -mean of everything returned."""
    top = list(np.argsort(-raw_logprobs)[:k])
    if chosen not in top:
        top.append(chosen)
    return -float(np.mean([raw_logprobs[t] for t in top]))


def test_engine_confidence_equals_the_reference_on_raw_logits():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 300, generator=g) * 3
    chosen = torch.tensor([0, 5, 299, int(logits[3].argmax()), 17, 150])
    got = confidence_from_logits(logits, chosen)
    raw = logits.double().log_softmax(-1).numpy()
    for r in range(6):
        assert got[r].item() == pytest.approx(reference_token_confidence(raw[r], int(chosen[r])),
                                              rel=1e-5)


def _logprob(x: float, rank: int):
    """A faithful stand-in for vllm.logprobs.Logprob (logprob, rank, decoded_token)."""
    return SimpleNamespace(logprob=x, rank=rank, decoded_token=None)


def _processed_top_p(raw: dict, top_p: float) -> dict:
    """vLLM's processed log-probabilities under top-p, from raw ones: the nucleus (the most
    likely tokens until their mass reaches top_p) renormalised, -inf outside it."""
    order = sorted(raw, key=raw.get, reverse=True)
    p = np.exp([raw[t] for t in order])
    keep = order[:int(np.searchsorted(np.cumsum(p), top_p) + 1)]
    z = np.log(np.exp([raw[t] for t in keep]).sum())
    return {t: (raw[t] - z if t in keep else -np.inf) for t in order}


def test_vllm_confidences_keep_a_peaked_position_confident_under_top_p():
    # raw log-probabilities (vLLM logprobs_mode=raw_logprobs) of a peaked and a flat position,
    # then the stop token's position (EOS id 9 sampled)
    peaked = {0: -0.01, **{t: -6.0 - 0.1 * t for t in range(1, 20)}}
    flat = {t: -3.0 - 0.01 * t for t in range(20)}
    at_eos = {t: -2.0 - 0.05 * t for t in range(20)}
    completion = SimpleNamespace(
        text="ab", token_ids=[0, 5, 9], finish_reason="stop",
        logprobs=[{t: _logprob(v, i + 1) for i, (t, v) in enumerate(d.items())}
                  for d in (peaked, flat, at_eos)])
    r = rollout_from_completion("q", 0, 0, [1], completion, stop_ids=frozenset({9}))
    # compute_confidence (deepconf/utils.py): -mean of every returned logprob, per position,
    # the stop token's position included
    want = [-np.mean([lp.logprob for lp in pos.values()]) for pos in completion.logprobs]
    np.testing.assert_allclose(r.token_confidences, want)
    assert r.completion_token_ids == [0, 5] and len(r.token_confidences) == 3
    assert len(r.token_logprobs) == len(r.token_entropies) == 2
    assert r.token_confidences[0] > r.token_confidences[1]  # the peaked position is confident
    # the processed convention (top_p = 0.9, -inf outside the nucleus, the finite ones
    # averaged) inverts that order: the peaked position's nucleus is its one token, log-prob 0
    proc = [_processed_top_p(d, 0.9) for d in (peaked, flat)]
    old = [-np.mean([v for v in d.values() if np.isfinite(v)]) for d in proc]
    assert old[0] == pytest.approx(0.0, abs=1e-9) and old[0] < old[1]


# ---------------------------------------------------------------- DeepConf voting
def reference_filtered_vote(classes, confs, top_percent: float):
    """compute_all_voting_results (top-eta filtered and weighted): only traces with an answer,
    threshold = percentile(confs, (1 - top) * 100), keep conf >= threshold, weight = conf."""
    valid = [(c, w) for c, w in zip(classes, confs) if c is not None]
    if not valid:
        return None
    thr = np.percentile([w for _, w in valid], (1 - top_percent) * 100)
    kept = [(c, w) for c, w in valid if w >= thr]
    score: dict = {}
    for c, w in kept:
        score[c] = score.get(c, 0.0) + w
    return max(score, key=score.get)


def test_top_eta_filtering_ranks_only_answered_traces():
    q = VoteQuestion(classes=[None, "a", "a", "b"], correct_of={"a": True, "b": False},
                 tokens=np.ones(4), signals={"conf_tail": np.array([20.0, 10, 9, 12])})
    idx = np.arange(4)
    for eta in (10.0, 50.0, 90.0):
        w = signal_weigher("conf_tail", eta=eta)(q, idx)
        want = reference_filtered_vote(q.classes, [20.0, 10, 9, 12], eta / 100)
        assert vote_correct(q.classes, w, q.correct_of) == float(q.correct_of[want]), eta
    # the unanswered trace's high confidence no longer pushes every answered trace out
    w = signal_weigher("conf_tail", eta=10.0)(q, idx)
    assert w[0] == 0 and w[3] > 0


def test_filtered_vote_equals_the_reference_on_random_questions():
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(2, 12))
        classes = [None if rng.random() < 0.2 else str(rng.integers(0, 3)) for _ in range(n)]
        confs = rng.uniform(0.5, 10, size=n)
        eta = float(rng.choice([10, 30, 50, 90]))
        q = VoteQuestion(classes=classes, correct_of={"0": True, "1": False, "2": False},
                     tokens=np.ones(n), signals={"c": confs})
        w = signal_weigher("c", eta=eta)(q, np.arange(n))
        want = reference_filtered_vote(classes, list(confs), eta / 100)
        got = vote_correct(classes, w, q.correct_of)
        assert got == (0.0 if want is None else float(q.correct_of[want])), trial


def reference_online_deepconf(traces, warmup: int, percentile: float, window: int,
                              with_stops: bool = False):
    """_deepthink_online + _perform_basic_voting, with attractor's percentile convention (the
    reference's confidence_percentile is 100 - P); returns (tokens, score per answer) and, with
    ``with_stops``, each trace's cut (its token count, None when it runs to its end), the
    traces being the uninterrupted ones (confidences of every position, the stop token's too)."""
    def min_conf(c):
        if len(c) == 0:           # compute_least_grouped returns [0] for an empty trace
            return 0.0
        if len(c) < window:
            return float(np.mean(c))
        return min(float(np.mean(c[i:i + window])) for i in range(len(c) - window + 1))

    warm, final = traces[:warmup], traces[warmup:]
    bar = np.percentile([min_conf(c) for _, c in warm], percentile)
    tokens = sum(len(c) for _, c in warm)
    answers, weights = [], []
    stops: list[int | None] = [None] * len(warm)
    for a, c in warm:
        if min_conf(c) >= bar and a is not None:
            answers.append(a)
            weights.append(min_conf(c))
    for a, c in final:
        stop = None
        if len(c) < window:
            stop = len(c) if np.mean(c) < bar else None
        else:
            for i in range(len(c) - window + 1):
                if np.mean(c[i:i + window]) < bar:
                    stop = i + window
                    break
        tokens += len(c) if stop is None else stop
        stops.append(stop)
        if stop is None and a is not None:
            answers.append(a)
            weights.append(min_conf(c))
    score: dict = {}
    for a, w in zip(answers, weights):
        score[a] = score.get(a, 0.0) + w
    if with_stops:
        return tokens, score, stops
    return tokens, score


def expected_correct(score: dict, correct: dict) -> float:
    """The reference takes the first of tied answers; attractor splits ties evenly (its
    documented convention), so a tie is scored as the share of correct tied answers."""
    if not score:
        return 0.0
    best = max(score.values())
    tied = [a for a, v in score.items() if np.isclose(v, best)]
    return sum(correct[a] for a in tied) / len(tied)


def test_deepconf_replay_votes_as_the_reference():
    correct = {"a": True, "b": False}
    # two low-confidence warm-up traces say 'b', one confident warm-up trace says 'a': the
    # reference drops the warm-up traces below the threshold, the old rule counted them
    traces = [Trace("b", 6, np.array([1.0] * 6)), Trace("b", 6, np.array([1.2] * 6)),
              Trace("a", 6, np.array([5.0] * 6)), Trace("a", 6, np.array([4.0] * 6)),
              Trace("b", 6, np.array([0.5] * 6))]
    out = deepconf_rule(warmup=3, percentile=50, window=3)(traces, correct)
    tokens, score = reference_online_deepconf([(t.answer, t.confidences) for t in traces], 3, 50,
                                              3)
    assert out.tokens == tokens and out.correct == 1.0 and max(score, key=score.get) == "a"


def test_deepconf_replay_equals_the_reference_on_random_questions():
    rng = np.random.default_rng(7)
    correct = {"a": True, "b": False, "c": False}
    for trial in range(150):
        n = int(rng.integers(3, 10))
        window = int(rng.integers(2, 9))
        traces = []
        for _ in range(n):
            length = int(rng.integers(1, 15))
            ans = None if rng.random() < 0.15 else str(rng.choice(["a", "b", "c"]))
            traces.append(Trace(ans, length, rng.uniform(0.2, 8, size=length)))
        warm = int(rng.integers(1, n))
        pct = float(rng.choice([10, 50, 90]))
        out = deepconf_rule(warm, pct, window)(traces, correct)
        tokens, score = reference_online_deepconf([(t.answer, t.confidences) for t in traces],
                                                  warm, pct, window)
        assert out.tokens == tokens, trial
        assert out.correct == expected_correct(score, correct), trial


# ---------------------------------------------------------------- AUROC and its interval
def test_rank_auroc_equals_scikit_learn_with_ties_and_weights():
    rng = np.random.default_rng(11)
    for _ in range(50):
        n = int(rng.integers(4, 60))
        s = rng.integers(0, 6, size=n).astype(float)  # many ties
        y = rng.random(n) < 0.4
        if y.all() or not y.any():
            continue
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
        w = rng.integers(0, 4, size=(3, n)).astype(float)
        got = weighted_auroc(s, y, w)
        for r in range(3):
            rep = np.repeat(np.arange(n), w[r].astype(int))
            if y[rep].all() or not y[rep].any():
                assert np.isnan(got[r])
            else:
                assert got[r] == pytest.approx(roc_auc_score(y[rep], s[rep]))


def _noise_trial(seed: int, n_q: int = 20, n_s: int = 32):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n_q)  # each question's own accuracy
    y = (rng.random((n_q, n_s)) < p[:, None]).ravel()
    signal = (rng.normal(size=n_q)[:, None] + 0.1 * rng.normal(size=(n_q, n_s))).ravel()
    return signal, y, np.repeat(np.arange(n_q), n_s)


def test_cluster_bootstrap_covers_half_on_question_level_noise():
    covered, naive = 0, 0
    for seed in range(100):
        s, y, q = _noise_trial(seed)
        lo, hi = bootstrap_auroc(s, y, q, reps=500, seed=seed)
        covered += lo <= 0.5 <= hi
        lo, hi = bootstrap_auroc(s, y, None, reps=200, seed=seed)
        naive += lo <= 0.5 <= hi
    assert covered >= 90
    assert naive < 80  # resampling samples as if independent: far below the nominal 95%


def test_question_level_interval_covers_half_on_noise():
    covered = 0
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        y = rng.random(40) < 0.5
        lo, hi = bootstrap_auroc(rng.normal(size=40), y, None, reps=500, seed=seed)
        covered += lo <= 0.5 <= hi
    assert covered >= 90


def test_signal_table_uses_fixed_directions_and_cluster_intervals():
    import pandas as pd

    rng = np.random.default_rng(2)
    n_q, n_s = 12, 6
    qid = np.repeat([f"q{i}" for i in range(n_q)], n_s)
    correct = rng.random(n_q * n_s) < 0.5
    samples = pd.DataFrame({"question_id": qid, "sample_id": np.tile(np.arange(n_s), n_q),
                            "correct": correct,
                            # higher entropy for correct samples: the fixed direction (lower =
                            # correct) must report this below 0.5, not flip it
                            "mean_token_entropy": correct + 0.01 * rng.normal(size=len(qid)),
                            "mystery": rng.normal(size=len(qid))})
    questions = pd.DataFrame({"question_id": [f"q{i}" for i in range(n_q)],
                              "answer_entropy_nats": rng.random(n_q), "top1_share": rng.random(n_q),
                              "majority_correct": [True, False] * (n_q // 2)})
    t = signal_table(samples, questions, None, reps=100)
    row = t[(t.signal == "mean_token_entropy") & (t.target == "sample_correct")].iloc[0]
    assert row.auroc == pytest.approx(0.0) and row.direction == "lower"
    assert row.interval == "cluster bootstrap over questions" and row.n_clusters == n_q
    assert "mystery" not in set(t.signal)  # unregistered columns have no direction: not scored
    q_row = t[(t.signal == "top1_share") & (t.target == "majority_correct")].iloc[0]
    assert q_row.interval == "bootstrap over questions" and q_row.n == n_q
    assert q_row.auroc == pytest.approx(roc_auc_score(questions.majority_correct,
                                                      questions.top1_share))
