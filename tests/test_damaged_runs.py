"""Damaged rollout shards: named in one line by every reading command (exit 2), listed by
``attractor verify``, and repaired by the run's own ``attractor sample`` command to the rollouts
of a run that never broke. Table-driven: the next kind of damage or reading command is a row."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest

from attractor.store.run_store import RunStore
from helpers import attractor

SAMPLE = ["sample", "--task", "synthetic:prosqa:n=6,seed=5", "-n", "2", "--max-new-tokens", "48",
          "--max-batch-rows", "4"]   # 2 questions per shard: 3 shards


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    run = tmp_path_factory.mktemp("damage") / "run"
    attractor(*SAMPLE, "--out", str(run))
    assert len(RunStore(run).rollout_shards()) == 3
    return run


def _truncate(shard):
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _empty(shard):
    shard.write_bytes(b"")


def _random(shard):
    shard.write_bytes(bytes(range(256)) * 8)


def _delete(shard):
    shard.unlink()


def _foreign(shard):
    shutil.copy(shard, shard.parent / "part-00009.parquet")


def _swapped(shard):
    """Another valid shard of the same run under this one's name (same size is not promised,
    the sha256 differs)."""
    other = shard.parent / "part-00002.parquet"
    shard.write_bytes(other.read_bytes())


DAMAGE = {
    "truncated": (_truncate, "bytes, "),
    "empty": (_empty, "0 bytes"),
    "random bytes": (_random, "bytes, "),
    "deleted": (_delete, "missing"),
    "foreign shard copied in": (_foreign, "not written by this run"),
    "another shard's bytes": (_swapped, ""),
}


def _damaged_copy(pristine, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    DAMAGE[kind][0](run / "rollouts" / "part-00001.parquet")
    return run


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_verify_names_the_damaged_shard_and_changes_nothing(pristine, tmp_path, kind):
    run = _damaged_copy(pristine, tmp_path, kind)
    before = sorted((p.name, p.stat().st_size) for p in (run / "rollouts").iterdir())
    proc = attractor("verify", str(run), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    name = "part-00009.parquet" if kind == "foreign shard copied in" else "part-00001.parquet"
    assert name in lines[0] and DAMAGE[kind][1] in lines[0]
    assert "attractor sample" in lines[-1]
    assert sorted((p.name, p.stat().st_size) for p in (run / "rollouts").iterdir()) == before
    assert attractor("verify", str(pristine)).returncode == 0


# reading commands on a damaged run: one line naming the shard, exit 2, nothing written
READERS = [
    ["analyze", "{run}"],
    ["capture", "{run}", "--layers", "0", "--positions", "last:1"],
    ["early-stop", "{run}", "--window", "8"],
    ["probe", "{run}", "--layers", "0", "--tokens", "0", "--folds", "2", "--refits", "2"],
    ["depth", "{run}", "--positions", "decisive", "--skip", "off"],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda a: a[0])
@pytest.mark.parametrize("kind", ["truncated", "random bytes", "deleted"])
def test_a_reading_command_names_the_damage_in_one_line(pristine, tmp_path, kind, argv):
    run = _damaged_copy(pristine, tmp_path, kind)
    proc = attractor(*[a.format(run=run) for a in argv], check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "part-00001.parquet" in err
    assert "attractor sample" in err
    assert not (run / "metrics").exists() and not (run / "latents").exists()


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_the_runs_own_sample_command_repairs_it_to_the_unbroken_rollouts(pristine, tmp_path,
                                                                         kind):
    run = _damaged_copy(pristine, tmp_path, kind)
    proc = attractor(*SAMPLE, "--out", str(run))
    assert "repairing" in proc.stdout
    # a foreign shard is only set aside; every other damage is sampled again
    assert ("nothing to do" in proc.stdout) == (kind == "foreign shard copied in")
    want, got = RunStore(pristine).rollouts(), RunStore(run).rollouts()
    pd.testing.assert_frame_equal(got, want)
    assert attractor("verify", str(run)).returncode == 0
    aside = run / "rollouts" / "_damaged"
    kept = list(aside.iterdir()) if aside.exists() else []
    assert len(kept) == (0 if kind == "deleted" else 1)   # the damaged bytes are kept
    attractor("analyze", str(run))


def test_a_run_written_before_shard_records_still_reads_and_verifies(pristine, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(pristine, run)
    (run / "rollouts" / "_shards.json").unlink()
    assert "footers" in attractor("verify", str(run)).stdout
    attractor("analyze", str(run))
    _random(run / "rollouts" / "part-00000.parquet")
    proc = attractor("analyze", str(run), check=False)
    assert proc.returncode == 2 and "part-00000.parquet" in proc.stderr


def test_debug_shows_the_cause_behind_the_one_line_error(tmp_path, monkeypatch):
    """``--debug`` (or ATTRACTOR_DEBUG=1) prints the traceback and the exception the one-line
    error replaced; without it the error stays one line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{bad\n')
    plain = attractor("sample", "--task", str(bad), "--out", str(tmp_path / "r"), check=False)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    for argv, env in ((["--debug"], None), ([], "1")):
        if env:
            monkeypatch.setenv("ATTRACTOR_DEBUG", env)
        proc = attractor(*argv, "sample", "--task", str(bad), "--out", str(tmp_path / "r"),
                         check=False)
        assert proc.returncode == 2 and "JSONDecodeError" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    monkeypatch.delenv("ATTRACTOR_DEBUG")
    again = attractor("sample", "--task", str(bad), "--out", str(tmp_path / "r"), check=False)
    assert len(again.stderr.strip().splitlines()) == 1   # --debug does not outlive its call


@pytest.fixture(scope="module")
def captured(pristine, tmp_path_factory):
    run = tmp_path_factory.mktemp("captured") / "run"
    shutil.copytree(pristine, run)
    attractor("capture", str(run), "--layers", "0,2", "--positions", "last:1,frac:0.5")
    attractor("analyze", str(run))
    return run


def _latents(run):
    store = RunStore(run)
    idx = store.hidden_store.index().to_pandas()
    return {(q, lay, pos): store.latents(q, lay, pos) for q, lay, pos in
            idx[["question_id", "layer", "position"]].drop_duplicates().itertuples(index=False)}


@pytest.mark.parametrize("target", ["latents/part-00000.safetensors", "latents/index.parquet"])
@pytest.mark.parametrize("kind", ["truncated", "random bytes", "deleted"])
def test_damaged_latents_are_named_and_the_runs_capture_command_repairs_them(captured, tmp_path,
                                                                              target, kind):
    run = tmp_path / "run"
    shutil.copytree(captured, run)
    DAMAGE[kind][0](run / target)
    proc = attractor("verify", str(run), check=False)
    assert proc.returncode == 2 and Path(target).name in proc.stdout
    assert "attractor capture" in proc.stdout.strip().splitlines()[-1]
    err = attractor("analyze", str(run), check=False)
    assert err.returncode == 2 and Path(target).name in err.stderr
    assert len(err.stderr.strip().splitlines()) == 1
    repair = attractor("capture", str(run), "--layers", "0,2", "--positions", "last:1,frac:0.5")
    assert "repairing" in repair.stdout
    want, got = _latents(captured), _latents(run)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert attractor("verify", str(run)).returncode == 0
    attractor("analyze", str(run))


def test_a_damaged_metric_table_is_listed_by_verify(captured, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(captured, run)
    _truncate(run / "metrics" / "questions.parquet")
    proc = attractor("verify", str(run), check=False)
    assert proc.returncode == 2 and "questions.parquet" in proc.stdout
    assert "attractor analyze" in proc.stdout
    attractor("analyze", str(run))   # rewrites it
    assert attractor("verify", str(run)).returncode == 0


def test_analyze_says_when_latents_cover_only_some_rollouts(captured, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(captured, run)
    store = RunStore(run)
    idx = store.hidden_store.index()
    keep = pa.compute.not_equal(idx["question_id"], idx["question_id"][0])
    store.hidden_store._write_index(idx.filter(keep))
    out = attractor("analyze", str(run)).stdout
    assert "latents cover 10 of 12 rollouts" in " ".join(out.split())


def test_a_kill_between_a_checkpoint_swaps_renames_resumes_from_the_old_checkpoint(tmp_path):
    """Checkpoints are swapped as directories (old renamed aside, new renamed in): a kill
    between the two renames leaves only NAME.old, which the next resume takes back."""
    from attractor.store.atomic import settled, swap_in

    ckpt, new = tmp_path / "train-state", tmp_path / "train-state.tmp"
    ckpt.mkdir()
    (ckpt / "state.json").write_text('{"step": 1}')
    new.mkdir()
    (new / "state.json").write_text('{"step": 2}')
    ckpt.rename(tmp_path / "train-state.old")          # the kill comes here
    assert (settled(ckpt) / "state.json").read_text() == '{"step": 1}'
    swap_in(new, ckpt)
    assert (ckpt / "state.json").read_text() == '{"step": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-state"]
