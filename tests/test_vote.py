import numpy as np
import pandas as pd
import pytest

from attractor.scaling.vote import VoteQuestion, evaluate, signal_weigher, tightness_weigher, vote_correct
from attractor.store.run_store import RunStore
from helpers import attractor


def test_weighted_vote_and_ties():
    correct = {"a": True, "b": False}
    assert vote_correct(["a", "b", "b"], np.ones(3), correct) == 0.0
    assert vote_correct(["a", "b", "b"], np.array([5.0, 1, 1]), correct) == 1.0
    assert vote_correct(["a", "b"], np.ones(2), correct) == 0.5
    assert vote_correct([None, None], np.ones(2), correct) == 0.0


def test_confidence_filtering_and_tightness_weights():
    q = VoteQuestion(classes=["a", "a", "b", "b", "b"], correct_of={"a": True, "b": False},
                 tokens=np.ones(5), signals={"conf": np.array([9.0, 8, 1, 2, 1])},
                 cosine=None)
    idx = np.arange(5)
    # top-40% by confidence keeps the two confident 'a' samples
    assert vote_correct(q.classes, signal_weigher("conf", eta=40)(q, idx), q.correct_of) == 1.0
    x = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [1, 0.05]], float)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    q.cosine = xn @ xn.T
    w = tightness_weigher(q, idx)
    assert w[0] > w[2]  # samples in the larger cluster weigh more


def test_evaluate_uses_the_same_subsets_and_full_set():
    q = VoteQuestion(classes=["a", "b", "b", None], correct_of={"a": True, "b": False},
                 tokens=np.array([10.0, 20, 30, 40]), signals={}, cosine=None)
    res = evaluate([q], {"majority": None}, [1, 4], draws=400, seed=0)
    assert res[("majority", 4)][0] == 0.0
    assert res[("majority", 1)][0] == pytest.approx(0.25, abs=0.06)
    assert res[("__tokens__", 4)][0] == 100.0


def test_vote_command_writes_the_table(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=3,seed=8",
              "--samples", "4", "--max-new-tokens", "20", "--out", str(run))
    attractor("capture", str(run), "--layers", "4", "--positions", "frac:0.5")
    attractor("analyze", str(run))
    proc = attractor("vote", str(run), "--draws", "20")
    assert "majority" in proc.stdout
    t = pd.read_parquet(run / "metrics" / "vote.parquet")
    assert {"method", "k", "accuracy", "ci_low", "ci_high", "tokens"} <= set(t.columns)
    assert set(t["k"]) == {1, 2, 4}
    assert ((t["ci_low"] <= t["accuracy"] + 1e-9) & (t["accuracy"] <= t["ci_high"] + 1e-9)).all()
    # every method at k = N votes over all 4 samples: the same tokens as the whole run
    roll = RunStore(run).rollouts()
    full = t[t["k"] == 4]
    assert full["tokens"].sub(roll.groupby("question_id")["n_tokens"].sum().mean()).abs().max() \
        < 1e-6
    assert {"majority", "tightness", "deepconf:conf_mean", "deepconf:conf_mean@top10%"} <= set(t["method"])
    bad = attractor("vote", str(run), "--eta", "0", check=False)
    assert bad.returncode == 2 and "--eta" in bad.stderr


def test_vote_reads_answers_in_the_reading_the_metrics_use(tmp_path):
    """A run analysed in the flexible reading votes on flexible answers: its plain-majority row
    at k = N is analyze's maj@N (before, vote read the strict columns of every run)."""
    import json

    rows = []
    for q, gold in enumerate(["7", "12", "30"]):
        # flexible: the gold three times and 5 once; strict reads only the last one's "#### 5"
        texts = [f"so the result is {gold}", f"it comes to {gold}", f"so {gold}", "#### 5"]
        rows.append({"id": f"q{q}", "question": f"What is {gold} + 0?", "answer": gold,
                     "responses": texts})
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    attractor("import", str(src), "--responses-field", "responses", "--kind", "math",
              "--out", str(run))
    attractor("analyze", str(run), "--reading", "flexible")
    attractor("vote", str(run), "--draws", "20")
    t = pd.read_parquet(run / "metrics" / "vote.parquet")
    got = t[(t["method"] == "majority") & (t["k"] == 4)]["accuracy"].iloc[0]
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert got == pytest.approx(summary["means"]["maj@4"]["mean"]) == pytest.approx(1.0)
