import numpy as np
import pandas as pd

from attractor.scaling.early_stop import (Trace, consensus_rule, deepconf_rule, first_below,
                                          latent_rule, majority_outcome)
from helpers import attractor

CORRECT = {"a": True, "b": False}


def _t(answer, conf, latent=None):
    conf = np.asarray(conf, float)
    return Trace(answer, len(conf), conf, None if latent is None else np.asarray(latent, float))


def test_first_below_counts_tokens_to_the_stop():
    conf = np.array([5, 5, 5, 1, 1, 5], float)
    assert first_below(conf, window=2, threshold=3.5) == 4   # groups: 5,5,3,1,3 -> group 2 ends at token 4
    assert first_below(conf, window=2, threshold=0.5) is None
    assert first_below(np.array([1.0, 1.0]), window=8, threshold=2.0) == 2  # short trace: one group


def test_deepconf_rule_stops_low_confidence_traces_and_drops_them():
    traces = [_t("a", [5] * 10), _t("a", [6] * 10), _t("b", [1] * 10), _t("b", [1] * 10),
              _t("b", [1] * 10)]
    full = majority_outcome(traces, CORRECT)
    assert full.correct == 0.0 and full.tokens == 50
    out = deepconf_rule(warmup=2, percentile=10, window=4)(traces, CORRECT)
    # threshold = 10th percentile of {5, 6} = 5.1; the three 'b' traces stop after 4 tokens
    assert out.tokens == 20 + 3 * 4 and out.correct == 1.0


def test_consensus_and_latent_rules():
    traces = [_t("a", [1] * 5, [1, 0]), _t("a", [1] * 5, [1, 0.1]), _t("b", [1] * 5, [0, 1]),
              _t("b", [1] * 5, [0, 1])]
    out = consensus_rule(min_traces=2, share=1.0)(traces, CORRECT)
    assert out.tokens == 10 and out.correct == 1.0
    out = latent_rule(min_traces=2, tightness=0.9)(traces, CORRECT)
    assert out.tokens == 10 and out.correct == 1.0
    out = latent_rule(min_traces=2, tightness=0.999)(traces, CORRECT)
    assert out.tokens == 20 and out.correct == 0.5  # never tight: all four, a tie


def test_early_stop_command(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=3,seed=6",
              "--samples", "8", "--max-new-tokens", "20", "--out", str(run))
    attractor("capture", str(run), "--layers", "4", "--positions", "last:1")
    proc = attractor("early-stop", str(run), "--window", "4")
    assert "early stopping" in proc.stdout
    t = pd.read_parquet(run / "metrics" / "early_stop.parquet")
    assert {"rule", "setting", "tokens_saved", "accuracy_loss"} <= set(t.columns)
    assert {"majority", "deepconf", "consensus", "latent"} <= set(t["rule"])
    ref = t[t.rule == "majority"].iloc[0]
    assert ref.tokens_saved == 0 and ref.accuracy_loss == 0
    assert (t["tokens_saved"] <= 1).all() and (t["tokens_saved"] >= 0).all()
    bad = attractor("early-stop", str(run), "--window", "0", check=False)
    assert bad.returncode == 2 and "--window" in bad.stderr
