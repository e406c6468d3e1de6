"""Probes used online (real tiny model, real runs): ``sample --early-stop probe:PATH,threshold=T``
spends exactly the tokens the offline replay predicts and resumes to the same rollouts;
``--allocate probe:PATH`` gives the lowest-rated questions the samples and resumes exactly; bad
probe files are refused with one line."""
import numpy as np
import pytest

from attractor.engines.base import spent_tokens

from attractor.run_model import MechanismRun
from attractor.probes.online import trace_scores
from attractor.probes.model import Probe
from attractor.store.run_store import RunStore
from helpers import attractor, drop_shard

COMMON = ["--model", "tiny", "--task", "synthetic:prosqa:n=6,seed=3", "--samples", "8",
          "--max-new-tokens", "40", "--seed", "1", "--max-batch-rows", "16"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A full run and a probe fitted on all of it (layer 2, N = 3, sample correctness; for the
    allocation test its mean score over a question's first round rates the question). Fitted
    directly (`attractor probe` itself is tested in test_probes.py)."""
    from attractor.probes.features import FeatureSet, collect

    root = tmp_path_factory.mktemp("probe-online")
    run = root / "full"
    attractor("sample", *COMMON, "--out", str(run))
    mr = MechanismRun(str(run), "test")
    fs = FeatureSet()
    collect(mr.model, mr.tokenizer, [q for c in mr.questions(set(), chunk=8) for q in c], [2], [3],
            fs)
    correct = RunStore(run).rollouts(["question_id", "sample_id", "correct"]).set_index(
        ["question_id", "sample_id"])["correct"]
    y = np.array([bool(correct[(q, s)]) for q, s in zip(fs.question_id, fs.sample_id)])
    path = run / "probe.safetensors"
    Probe.fit(np.concatenate(fs.hidden[2]), y, {"model": "tiny", "weights_sha256": mr.sha,
                                                 "layer": 2, "n_tokens": 3,
                                                 "target": "correct"}).save(path)
    return run, path


def _rows(run):
    return RunStore(run).rollouts().sort_values(["question_id", "sample_id"]).reset_index(drop=True)


def test_probe_stop_spends_exactly_the_tokens_its_replay_predicts(probed, tmp_path):
    run, path = probed
    mr = MechanismRun(str(run), "test")
    probe = Probe.load(path)
    qs = [q for chunk in mr.questions(set(), chunk=8) for q in chunk]
    scores = trace_scores(mr.model, mr.tokenizer, qs, probe)
    assert scores, "some traces must be judged at N = 3"
    # many samples share their first 3 tokens, so scores tie; cut midway between two distinct
    # scores near the median (online states differ from the re-forward's in the last bits)
    v = np.unique(np.round(list(scores.values()), 6))
    i = len(v) // 2
    thr = float((v[i - 1] + v[i]) / 2)
    full = _rows(run)
    cut = [scores.get((q, s), 1.0) < thr for q, s in zip(full["question_id"], full["sample_id"])]
    predicted = sum(3 if c else n for c, n in zip(cut, full["n_tokens"]))
    assert any(cut) and not all(cut)

    out = tmp_path / "online"
    attractor("sample", *COMMON, "--early-stop", f"probe:{path},threshold={thr}", "--out", str(out))
    online = _rows(out)
    assert int(online["n_tokens"].sum()) == predicted
    for c, f, o in zip(cut, full.itertuples(), online.itertuples()):
        if c:  # cut after its 3 tokens: the full trace's prefix, no answer, never votes
            assert o.finish_reason == "early_stop" and o.n_tokens == 3
            assert list(o.completion_token_ids) == list(f.completion_token_ids)[:3]
            assert not isinstance(o.answer_class, str) and not o.correct
        else:
            assert o.text == f.text and o.finish_reason == f.finish_reason

    # a killed run resumes to the same rollouts
    store = RunStore(out)
    drop_shard(store.rollout_shards()[-1])
    store.update_stage("sample", status="running")
    attractor("sample", *COMMON, "--early-stop", f"probe:{path},threshold={thr}", "--out", str(out))
    assert _rows(out)[["question_id", "sample_id", "text", "n_tokens"]].equals(
        online[["question_id", "sample_id", "text", "n_tokens"]])

    # the offline replay command has probe rows, scored the same way
    attractor("early-stop", str(run), "--probe", str(path), "--window", "8")
    table = RunStore(run).metric_table("early_stop")
    probe_rows = table[table["rule"] == "probe"]
    assert set(probe_rows["row"]) == {"grid", "cross-fit"}
    # the replay counts a trace's tokens as DeepConf does, its stop token included
    spent = [spent_tokens(n, c) for n, c in zip(full["n_tokens"], full["token_confidences"])]
    assert sum(spent) == int(full["n_tokens"].sum()) + int((full["finish_reason"] == "stop").sum())
    for r in probe_rows[probe_rows["row"] == "grid"].itertuples():
        t = float(r.setting.split("=")[1])
        want = sum(3 if scores.get((q, s), 1.0) < t else n for q, s, n in
                   zip(full["question_id"], full["sample_id"], spent))
        assert r.tokens == want


def test_probe_allocation_favours_low_scores_and_resumes(probed, tmp_path):
    run, stable_path = probed
    args = [*COMMON, "--budget", "360", "--first-round", "2", "--allocate",
            f"probe:{stable_path}"]
    out = tmp_path / "alloc"
    attractor("sample", *args, "--out", str(out))
    scores = RunStore(out).sub("allocation") / "probe_scores.parquet"
    assert scores.exists()
    import pandas as pd

    s = pd.read_parquet(scores).set_index("question_id")["score"]
    df = _rows(out)
    counts = df.groupby("question_id").size()
    lowest, highest = s.idxmin(), s.idxmax()
    assert counts[lowest] >= counts[highest]
    assert counts[lowest] > 2, "the least stable question gets more than its first round"
    store = RunStore(out)
    drop_shard(store.rollout_shards()[-1])
    store.update_stage("sample", status="running")
    attractor("sample", *args, "--out", str(out))
    assert _rows(out)[["question_id", "sample_id", "text"]].equals(
        df[["question_id", "sample_id", "text"]])


def test_bad_probe_files_are_refused(probed, random_model_dir, tmp_path):
    run, path = probed
    bad = attractor("sample", "--model", str(random_model_dir), *COMMON[2:], "--early-stop",
                    f"probe:{path},threshold=0.5", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "not on this model" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    short = attractor("sample", *COMMON[:-4], "--max-new-tokens", "3", "--max-batch-rows", "16",
                      "--early-stop", f"probe:{path},threshold=0.5", "--out",
                      str(tmp_path / "y"), check=False)
    assert short.returncode == 2 and "below --max-new-tokens 3" in short.stderr
    for spec in (f"probe:{path},threshold=2", f"probe:{path}", "probe:threshold=0.5"):
        r = attractor("sample", *COMMON, "--early-stop", spec, "--out", str(tmp_path / "z"),
                      check=False)
        assert r.returncode == 2, spec
