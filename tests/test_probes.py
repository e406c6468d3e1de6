"""attractor probe: planted signal vs noise, grouped folds, intervals on noise, files that load
in another process and refuse another model, the command end to end."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from attractor.errors import UserError
from attractor.metrics.auroc import auroc, bootstrap_auroc
from attractor.probes.model import (Probe, cross_val_scores, group_folds, permute_by_question,
                                    refit_interval, refit_se, selected_level)
from helpers import attractor, snapshot


def _data(seed, n_q=80, per_q=4, d=8, planted=True):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"q{i}" for i in range(n_q)], per_q)
    x = rng.normal(size=(n_q * per_q, d)) + np.repeat(rng.normal(size=(n_q, d)), per_q, 0)
    if planted:
        w = rng.normal(size=d)
        y = (x @ w + rng.normal(scale=1.0, size=len(x))) > 0
    else:
        y = np.repeat(rng.random(n_q) < 0.5, per_q) ^ (rng.random(n_q * per_q) < 0.3)
    return x, y, groups


def test_group_folds_never_split_a_question():
    groups = np.repeat([f"q{i}" for i in range(37)], 3)
    folds = group_folds(groups, k=5, seed=1)
    seen = set()
    for test in folds:
        qs = set(groups[test])
        assert not qs & seen
        seen |= qs
        train = np.setdiff1d(np.arange(len(groups)), test)
        assert not qs & set(groups[train])
    assert seen == set(groups) and sum(len(f) for f in folds) == len(groups)


def test_planted_signal_beats_shuffled_labels_and_noise_sits_at_half():
    x, y, g = _data(0)
    s = cross_val_scores(x, y, g)
    assert auroc(s, y) > 0.85
    shuffled = np.random.default_rng(1).permutation(y)
    assert abs(auroc(cross_val_scores(x, shuffled, g), shuffled) - 0.5) < 0.1
    covered = naive = 0
    for seed in range(20):
        xn, yn, gn = _data(100 + seed, planted=False)
        sn = cross_val_scores(xn, yn, gn, k=3)
        lo, hi = refit_interval(xn, yn, gn, auroc(sn, yn), reps=15, k=3, seed=seed)
        covered += lo <= 0.5 <= hi
        lo, hi = bootstrap_auroc(sn, yn, gn, reps=300, seed=seed)
        naive += lo <= 0.5 <= hi
    assert covered >= 18          # a 95% interval on 20 noise runs (P(< 18) = 0.08 at 95%)
    assert naive < covered        # bootstrapping the out-of-fold scores alone under-covers


def test_saved_probe_scores_the_same_in_another_process_and_refuses_another_model(tmp_path):
    x, y, g = _data(3)
    probe = Probe.fit(x, y, {"model": "tiny", "weights_sha256": "a" * 64, "layer": 2,
                             "n_tokens": 4, "target": "correct", "hidden_size": 8})
    path = tmp_path / "p.safetensors"
    probe.save(path)
    assert b"pickle" not in path.read_bytes()[:200]
    code = ("import sys, numpy as np; from attractor.probes.model import Probe; "
            "p = Probe.load(sys.argv[1]); x = np.load(sys.argv[2]); "
            "print(' '.join(f'{v:.7f}' for v in p.score(x)))")
    np.save(tmp_path / "x.npy", x[:10])
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, check=True).stdout.split()
    np.testing.assert_allclose(np.array(out, float), probe.score(x[:10]), atol=1e-6)
    from attractor.probes.model import _pipeline

    ref = _pipeline(x.shape[1], len(y), 0).fit(x, y).predict_proba(x[:10])[:, 1]
    np.testing.assert_allclose(probe.score(x[:10]), ref, atol=1e-5)
    loaded = Probe.load(path)
    assert loaded.meta["layer"] == 2 and loaded.meta["target"] == "correct"
    with pytest.raises(UserError, match="fitted on tiny"):
        Probe.load(path, weights_sha256="b" * 64)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a probe")
    with pytest.raises(UserError, match="not a probe file"):
        Probe.load(bad)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("probe") / "run"
    attractor("sample", "--task", "synthetic:prosqa:n=16,seed=5", "--samples", "4",
              "--out", str(run))
    return run


def test_probe_command_end_to_end(tiny_run):
    proc = attractor("probe", str(tiny_run), "--layers", "2,4", "--tokens", "0,2",
                     "--refits", "2")
    assert "Early-token probes" in proc.stdout
    df = pd.read_parquet(tiny_run / "metrics" / "probes.parquet")
    hid = df[df["feature"] == "hidden"]
    assert set(hid["layer"]) == {2, 4} and set(hid["n_tokens"]) <= {0, 2}
    assert {"shuffled labels", "question_length", "confidence", "entropy"} <= set(df["feature"])
    assert (df[df["feature"] == "confidence"]["n_tokens"] > 0).all()   # N = 0 has no prefix
    # one selection-corrected row per (target, N): the best per-layer AUROC with an interval
    # at the Bonferroni level over the 2 layers, wider than that layer's own 95% interval
    for (target, n), sub in df.groupby(["target", "n_tokens"]):
        h = sub[sub["feature"] == "hidden"]
        b = sub[sub["feature"] == "hidden, best layer"]
        assert len(b) == 1
        top = h.loc[h["auroc"].idxmax()]
        assert b["layer"].iloc[0] == top["layer"] and b["auroc"].iloc[0] == top["auroc"]
        assert b["ci_low"].iloc[0] <= top["ci_low"] and b["ci_high"].iloc[0] >= top["ci_high"]
    files = sorted(p.name for p in (tiny_run / "probes").glob("*.safetensors"))
    assert "correct_n2.safetensors" in files
    p = Probe.load(tiny_run / "probes" / "correct_n2.safetensors")
    m = json.loads((tiny_run / "manifest.json").read_text())
    assert p.meta["weights_sha256"] == m["stages"]["probe"]["weights_sha256"]
    assert p.meta["layer"] in (2, 4) and p.meta["hidden_size"] == p.mean.shape[0]
    # the report's probe section (its figure drawn from the table)
    from attractor.report.mechanism import mechanism_sections
    from attractor.store.run_store import RunStore

    drawn = []
    sections = mechanism_sections(RunStore(tiny_run), lambda name, *a: drawn.append(name) or "")
    assert "probes" in drawn and [s[0] for s in sections] == ["probes"]


@pytest.mark.parametrize("args,needle", [
    (["--tokens", "a,b"], "--tokens"),
    (["--tokens", "-1"], "non-negative"),
    (["--folds", "1"], "--folds"),
    (["--refits", "1"], "--refits"),
    (["--layers", "0,9"], "layers 0..4"),
])
def test_probe_bad_options(tiny_run, tmp_path, args, needle):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = snapshot(run)
    proc = attractor("probe", str(run), *args, check=False)
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_shuffled_labels_are_permuted_by_question():
    """The control keeps each question's block of labels whole (a question's samples share
    their question), and only reassigns blocks among questions of the same size."""
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 2 + ["e"] * 2)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0], bool)
    blocks = {g: tuple(y[groups == g]) for g in "abcde"}
    seen = set()
    for seed in range(20):
        p = permute_by_question(y, groups, np.random.default_rng(seed))
        got = {g: tuple(p[groups == g]) for g in "abcde"}
        assert sorted(got[g] for g in "abc") == sorted(blocks[g] for g in "abc")
        assert sorted(got[g] for g in "de") == sorted(blocks[g] for g in "de")
        seen.add(got["a"])
    assert len(seen) == 3        # every size-4 block lands on question a at some seed


def test_selection_corrected_interval_covers_the_best_of_several_noise_layers():
    """Eight layers of noise features, labels tied to questions only: the best layer's own
    95% interval sits above 0.5 more often than 5%; the Bonferroni-level one does not."""
    from scipy.stats import norm

    plain = corrected = 0
    runs = 12
    for seed in range(runs):
        rng = np.random.default_rng(500 + seed)
        n_q, per_q = 60, 3
        groups = np.repeat([f"q{i}" for i in range(n_q)], per_q)
        y = np.repeat(rng.random(n_q) < 0.5, per_q) ^ (rng.random(n_q * per_q) < 0.3)
        best = None
        for layer in range(8):
            x = rng.normal(size=(len(y), 4))
            s = cross_val_scores(x, y, groups, k=3, seed=seed)
            a = auroc(s, y)
            if best is None or a > best[0]:
                best = (a, x)
        a, x = best
        se = refit_se(x, y, groups, reps=8, k=3, seed=seed)
        plain += a - norm.ppf(0.975) * se > 0.5
        corrected += a - norm.ppf(1 - (1 - selected_level(0.95, 8)) / 2) * se > 0.5
    assert selected_level(0.95, 8) == pytest.approx(1 - 0.05 / 8)
    assert plain >= 2 and corrected == 0   # measured: 3 of 12 and 0 of 12
