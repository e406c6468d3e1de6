import json
import signal
import subprocess
import sys
import time

import pandas as pd

from attractor.store.run_store import RunStore
from helpers import ENV, attractor, snapshot

TASK = "synthetic:prosqa:n=6,seed=5"


def _sample(model_dir, out, *extra):
    return attractor("sample", "--model", str(model_dir), "--task", TASK, "--samples", "4",
                     "--temperature", "1.0", "--max-new-tokens", "16", "--seed", "3",
                     "--max-batch-rows", "8", "--out", str(out), *extra)


def test_sample_writes_a_complete_graded_run(random_model_dir, tmp_path):
    run = tmp_path / "run"
    _sample(random_model_dir, run)
    store = RunStore(run)
    m = store.manifest
    assert m["identity"]["sampling.samples"] == 4 and m["seeds"]["base_seed"] == 3
    assert m["model"]["weights_sha256"] and m["model"]["architecture"] == "Qwen2ForCausalLM"
    assert m["task"]["spec"] == TASK and m["versions"]["torch"]
    assert m["logprobs"]["entropy_unit"] == "nats" and m["grading"]["extraction"]
    assert m["stages"]["sample"]["status"] == "done"
    assert m.engine == {"name": "hf", "device": "cpu", "max_batch_rows": 8}
    assert m.command[:2] == ["attractor", "sample"]
    df = store.rollouts()
    assert len(df) == 24 and len(store.rollout_shards()) == 3
    assert df.groupby("question_id").size().eq(4).all()
    assert not df.duplicated(["question_id", "sample_id"]).any()
    assert (df["seed"] == 3 + df["sample_id"]).all()
    for col in ("prompt_token_ids", "completion_token_ids", "text", "n_tokens", "finish_reason",
                "token_logprobs", "token_entropies", "answer", "answer_class", "correct"):
        assert col in df.columns
    assert (df["n_tokens"] == df["completion_token_ids"].map(len)).all()
    assert df["correct"].notna().all()
    # the Parquet shards are plain files any tool reads
    assert len(pd.read_parquet(run / "rollouts")) == 24


def test_rerunning_a_finished_command_does_nothing(random_model_dir, tmp_path):
    run = tmp_path / "run"
    _sample(random_model_dir, run)
    before = snapshot(run)
    proc = _sample(random_model_dir, run)
    assert "nothing to do" in proc.stdout
    assert snapshot(run) == before


def test_different_config_into_existing_run_is_refused_untouched(random_model_dir, tmp_path):
    run = tmp_path / "run"
    _sample(random_model_dir, run)
    before = snapshot(run)
    proc = attractor("sample", "--model", str(random_model_dir), "--task", TASK, "--samples", "4",
                     "--temperature", "0.5", "--max-new-tokens", "16", "--seed", "3",
                     "--max-batch-rows", "8", "--out", str(run), check=False)
    assert proc.returncode == 2
    assert "temperature" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_killed_run_resumes_to_the_same_rollouts(random_model_dir, tmp_path):
    args = ["--model", str(random_model_dir), "--task", "synthetic:prosqa:n=10,seed=9",
            "--samples", "4", "--max-new-tokens", "24", "--max-batch-rows", "4"]
    full = tmp_path / "full"
    attractor("sample", *args, "--out", str(full))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "attractor", "sample", *args, "--out",
                             str(killed)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "rollouts").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((killed / "rollouts").glob("part-*.parquet")))
    assert 3 <= n_before < 10, "the kill should land mid-run"
    attractor("sample", *args, "--out", str(killed))
    a = RunStore(full).rollouts().drop(columns=[])
    b = RunStore(killed).rollouts()
    assert len(b) == 40 and not b.duplicated(["question_id", "sample_id"]).any()
    key = ["question_id", "sample_id"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert a["completion_token_ids"].map(list).tolist() == b["completion_token_ids"].map(list).tolist()
    assert a["text"].tolist() == b["text"].tolist()
    assert not list(killed.rglob("*.tmp"))
    assert json.loads((killed / "manifest.json").read_text())["stages"]["sample"]["status"] == "done"
