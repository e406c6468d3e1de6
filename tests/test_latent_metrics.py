import json

import numpy as np
import pandas as pd
import pytest
import torch

from attractor.metrics.confidence import deepconf_signals, group_confidences
from attractor.metrics.hidden import geometry, mean_pairwise_cosine
from attractor.metrics.signals import auroc_row
from attractor.metrics.trajectory import trajectory_signals
from helpers import attractor


def test_tightness_equals_the_pairwise_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 16, generator=g) + 0.5
    fast = mean_pairwise_cosine(x)
    for b in range(3):
        sims = [torch.nn.functional.cosine_similarity(x[b, i], x[b, j], dim=0)
                for i in range(7) for j in range(7) if i != j]
        assert fast[b].item() == pytest.approx(torch.stack(sims).mean().item(), abs=1e-5)
    assert torch.isnan(mean_pairwise_cosine(x[:, :1])).all()


def test_geometry_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 5)).astype(np.float32)
    x[:, :, 0] *= 10  # one dominant direction
    g = geometry(torch.from_numpy(x), np.array([1, 1, 1, 0, 0, 0], bool))
    for b in range(2):
        cov = np.cov(x[b].T)
        ev = np.linalg.eigvalsh(cov)
        assert g["cov_trace"][b] == pytest.approx(np.trace(cov), rel=1e-4)
        assert g["pc1_explained"][b] == pytest.approx(ev[-1] / ev.sum(), rel=1e-4)
        assert g["mean_norm"][b] == pytest.approx(np.linalg.norm(x[b], axis=1).mean(), rel=1e-5)
    assert np.isfinite(g["tightness_correct"]).all() and np.isfinite(g["tightness_wrong"]).all()


def test_deepconf_signals_and_short_traces():
    conf = np.array([5.0, 5.0, 1.0, 5.0, 5.0, 5.0])
    assert group_confidences(conf, 2).tolist() == [5.0, 3.0, 3.0, 5.0, 5.0]
    s = deepconf_signals(conf, window=2, tail=2)
    assert s["conf_lowest_group"] == 3.0 and s["conf_tail"] == 5.0
    assert s["conf_mean"] == pytest.approx(26 / 6)
    short = deepconf_signals([2.0, 4.0], window=2048)  # shorter than the window: one group
    assert short["conf_lowest_group"] == 3.0 and short["conf_bottom10"] == 3.0
    assert np.isnan(deepconf_signals([])["conf_mean"])


def test_trajectory_signals_on_simple_paths():
    straight = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])
    s = trajectory_signals(straight)
    # net change per step (3 steps), path length 3, every step along the drift
    assert s["net_change"] == 1 and s["cumulative_change"] == 3 and s["aligned_change"] == 1
    back = np.array([[0.0, 0], [1, 0], [0, 0]])
    s = trajectory_signals(back)  # no drift: cosines with a zero vector count as 0
    assert s["net_change"] == 0 and s["cumulative_change"] == 2 and s["aligned_change"] == 0
    assert np.isnan(trajectory_signals(straight[:1])["net_change"])


def test_auroc_row_reports_the_registered_direction():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    r = auroc_row("mean_token_entropy", "sample_correct", scores, np.array([1, 1, 0, 0]))
    assert r["auroc"] == 1.0 and r["direction"] == "lower"
    # the same data read as a signal where higher means correct: a finding below 0.5
    r = auroc_row("conf_mean", "sample_correct", scores, np.array([1, 1, 0, 0]))
    assert r["auroc"] == 0.0 and r["direction"] == "higher"
    assert auroc_row("not_a_signal", "sample_correct", scores, np.array([1, 1, 0, 0])) is None


def test_analyze_with_latents_writes_every_table(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=4,seed=2",
              "--samples", "4", "--max-new-tokens", "30", "--out", str(run))
    attractor("capture", str(run), "--layers", "all", "--positions", "frac:0.5,chunk:8,answer")
    attractor("analyze", str(run), "--window", "8")
    lat = pd.read_parquet(run / "metrics" / "latent.parquet")
    assert {"question_id", "layer", "position", "tightness", "tightness_correct",
            "tightness_wrong", "cov_trace", "pc1_explained", "mean_norm"} <= set(lat.columns)
    assert set(lat["layer"]) == {0, 1, 2, 3, 4}
    smp = pd.read_parquet(run / "metrics" / "samples.parquet")
    assert len(smp) == 16
    for col in ("conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail",
                "traj_net_change", "traj_cumulative_change", "traj_aligned_change",
                "traj_net_change@L4"):
        assert col in smp.columns
    sig = pd.read_parquet(run / "metrics" / "signals.parquet")
    assert {"signal", "target", "auroc", "direction", "ci_low", "ci_high"} <= set(sig.columns)
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert summary["has_latents"] is True
