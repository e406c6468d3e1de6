"""Hostile inputs against existing runs (issue 33), one row each: how the run or a file is
prepared, the command, and what its one-line error (exit 2) must say; the run is left exactly
as it was. Every case is answered by one shared check (the run check ``open_run``, the
destination check, the file records of :mod:`attractor.store.integrity`, the option checks of
:mod:`attractor.checks`). The next case is one more row."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attractor.store.run_store import RunStore
from helpers import attractor, drop_shard, snapshot

SAMPLE = ["sample", "--task", "synthetic:prosqa:n=6,seed=5", "-n", "2", "--max-new-tokens", "48",
          "--max-batch-rows", "4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run with latents and metrics, a run whose sampling stopped after one of
    three shards, and a run where every rollout is wrong."""
    root = tmp_path_factory.mktemp("hostile")
    done = root / "done"
    attractor(*SAMPLE, "--out", str(done))
    attractor("capture", str(done), "--layers", "0,2", "--positions", "last:1")
    attractor("analyze", str(done))
    partial = root / "partial"
    shutil.copytree(done, partial, ignore=shutil.ignore_patterns("latents", "metrics"))
    for shard in sorted((partial / "rollouts").glob("part-*.parquet"))[1:]:
        drop_shard(shard)
    RunStore(partial).update_stage("sample", status="running")
    wrong = root / "wrong"
    questions = root / "impossible.jsonl"
    questions.write_text("".join(json.dumps({"id": str(i), "question": f"What is {i} + {i}?",
                                             "answer": "987654321"}) + "\n" for i in range(6)))
    attractor("sample", "--task", str(questions), "-n", "3", "--max-new-tokens", "16",
              "--out", str(wrong))
    return {"done": done, "partial": partial, "wrong": wrong}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _first(run: Path, pattern: str) -> Path:
    return sorted(run.glob(pattern))[0]


def _vector_of_other_weights(run: Path, tmp: Path) -> None:
    """A steering vector of the tiny model's shape whose record names other weights."""
    from attractor.steering.vector import SteeringVector

    SteeringVector(np.ones((4, 128), np.float32), {"kind": "fractional", "model": "other",
                                                  "weights_sha256": "0" * 64}
                   ).save(tmp / "v.safetensors")


def _empty_loop_json(run: Path, tmp: Path) -> None:
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / "loop.json").write_text("{}")
    (tmp / "ckpt" / "model.safetensors").write_bytes(b"")


def _import_file(run: Path, tmp: Path, finish: str = "stop") -> None:
    (tmp / "x.jsonl").write_text(json.dumps({"id": "a", "question": "What is 1 + 1?",
                                             "answer": "2", "response": "#### 2",
                                             "finish": finish}) + "\n")


# (id, run, setup(run, tmp), argv, needle); {run} is a copy of the run, {tmp} a scratch
# folder that holds a regular file "file"
CASES = [
    # damaged run files
    ("truncated latent shard, analyze", "done",
     lambda r, t: _truncate(_first(r, "latents/part-*.safetensors")),
     ["analyze", "{run}"], "part-00000.safetensors: "),
    ("truncated latent shard, vote", "done",
     lambda r, t: _truncate(_first(r, "latents/part-*.safetensors")),
     ["vote", "{run}"], "attractor capture"),
    ("truncated latent index, analyze", "done",
     lambda r, t: _truncate(r / "latents" / "index.parquet"), ["analyze", "{run}"],
     "index.parquet: "),
    ("truncated metrics/samples.parquet, vote", "done",
     lambda r, t: _truncate(r / "metrics" / "samples.parquet"), ["vote", "{run}"],
     "samples.parquet: "),
    ("truncated summary.json, report", "done",
     lambda r, t: _truncate(r / "metrics" / "summary.json"), ["report", "{run}"],
     "summary.json: "),
    ("random bytes in the latent index, capture", "done",
     lambda r, t: (r / "latents" / "index.parquet").write_bytes(bytes(range(256))),
     ["early-stop", "{run}"], "index.parquet: "),
    # half-made runs
    ("unfinished run, early-stop", "partial", None, ["early-stop", "{run}"],
     "sampling has not finished (2 of 6 questions"),
    ("unfinished run, capture", "partial", None, ["capture", "{run}"],
     "sampling has not finished"),
    ("unfinished run, depth", "partial", None, ["depth", "{run}"], "sampling has not finished"),
    ("unfinished run, probe", "partial", None, ["probe", "{run}"], "sampling has not finished"),
    ("unfinished run, attention", "partial", None, ["attention", "{run}"],
     "sampling has not finished"),
    ("unfinished run, steer build", "partial", None,
     ["steer", "build", "{run}", "--kind", "stability", "--out", "{tmp}/v.safetensors"],
     "sampling has not finished"),
    # destinations
    ("sweep --out is a file", "done", None,
     ["sweep", "--task", "synthetic:prosqa:n=2", "--out", "{tmp}/file"], "is a file"),
    ("compare --out is a file", "done", None, ["compare", "{run}", "{run}", "--out", "{tmp}/file"],
     "is a file"),
    ("latent eval --out is a file", "done", None, ["latent", "eval", "--out", "{tmp}/file"],
     "is a file"),
    ("train consistency --out is a file", "done", None,
     ["train", "consistency", "--out", "{tmp}/file"], "is a file"),
    ("steer build --out unwritable", "done", None,
     ["steer", "build", "{run}", "--kind", "fractional", "--out", "/proc/nope/v.safetensors"],
     "cannot write"),
    ("latent inspect --out unwritable", "done", None,
     ["latent", "inspect", "{tmp}/ckpt", "--out", "/proc/nope"], "cannot write"),
    ("sample --out unwritable", "done", None,
     ["sample", "--task", "synthetic:prosqa:n=2", "--out", "/proc/nope/run"], "cannot write"),
    # options other commands refuse
    ("report --layer 99", "done", None, ["report", "{run}", "--layer", "99"],
     "--layer 99: not captured (captured layers: 0, 2)"),
    ("report --layer -1", "done", None, ["report", "{run}", "--layer", "-1"],
     "--layer -1: not captured"),
    ("report --position banana", "done", None, ["report", "{run}", "--position", "banana"],
     "--position banana: not captured"),
    ("compare --position banana", "done", None,
     ["compare", "{run}", "{run}", "--out", "{tmp}/cmp", "--position", "banana"],
     "--position banana: not captured"),
    ("steer build --max-tokens-per-batch 0", "done", None,
     ["steer", "build", "{run}", "--kind", "stability", "--out", "{tmp}/v.safetensors",
      "--max-tokens-per-batch", "0"], "--max-tokens-per-batch must be in 1.."),
    ("capture --max-tokens-per-batch -3", "done", None,
     ["capture", "{run}", "--max-tokens-per-batch", "-3"], "--max-tokens-per-batch must be in 1.."),
    ("probe --folds 100 on 6 questions", "done", None, ["probe", "{run}", "--folds", "100"],
     "--folds 100: more folds than the run's 6 questions"),
    ("import --grader banana", "done", _import_file,
     ["import", "{tmp}/x.jsonl", "--response-field", "response", "--grader", "banana",
      "--out", "{tmp}/imp"], "--grader: expected one of auto, math, exact"),
    ("import an unknown finish reason", "done",
     lambda r, t: _import_file(r, t, finish="eos"),
     ["import", "{tmp}/x.jsonl", "--response-field", "response", "--finish-reason-field",
      "finish", "--out", "{tmp}/imp"], "x.jsonl:1: field 'finish' must be 'stop' or 'length'"),
    ("import onto a sampled run", "done", _import_file,
     ["import", "{tmp}/x.jsonl", "--response-field", "response", "--out", "{run}"],
     "not an import; import into a new --out"),
    ("hf task offline", "done", None,
     ["sample", "--task", "hf:nonexistent/ds:train", "--out", "{tmp}/hf"],
     "--task hf:nonexistent/ds:train: the dataset did not load"),
    ("a local --model path that does not exist", "done", None,
     ["sample", "--task", "synthetic:prosqa:n=2", "--model", "{tmp}/no-such-model",
      "--out", "{tmp}/r"], "no-such-model: no such directory"),
    # requests that would run for days
    ("vote --draws 10^8", "done", None, ["vote", "{run}", "--draws", "100000000"],
     "--draws must be in 1..100000"),
    ("sample --samples 10^9", "done", None,
     ["sample", "--task", "synthetic:prosqa:n=2", "--samples", "1000000000", "--out", "{tmp}/r"],
     "--samples must be in 1..100000"),
    ("vote --eta 0", "done", None, ["vote", "{run}", "--eta", "0"], "--eta: each value"),
    # degenerate inputs
    ("probe where every rollout is wrong", "wrong", None, ["probe", "{run}"],
     "every rollout is wrong"),
    ("latent eval of a loop.json without a method", "done", _empty_loop_json,
     ["latent", "eval", "{tmp}/ckpt", "--limit", "2"], "no 'method' field"),
    ("latent inspect swap with one question", "done", None,
     ["latent", "inspect", "{released}", "--limit", "1", "--interventions", "swap",
      "--out", "{tmp}/insp"], "--kinds swap: needs at least 2 questions"),
    ("a steering vector built on other weights", "done", _vector_of_other_weights,
     ["sample", "--task", "synthetic:prosqa:n=2", "--steer", "{tmp}/v.safetensors", "--alpha",
      "0.1", "--out", "{tmp}/r"], "not on this model"),
    ("resume with another --offset", "done", None, SAMPLE + ["--offset", "1", "--out", "{run}"],
     "--offset at its default, this command has --offset 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_input_is_one_line_and_changes_nothing(runs, tmp_path, case):
    _, which, setup, argv, needle = case
    from attractor.latent.checkpoint import RELEASED

    run = tmp_path / "run"
    shutil.copytree(runs[which], run)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "file").write_text("a file, not a directory\n")
    if setup is not None:
        setup(run, scratch)
    before = snapshot(run)
    args = [a.format(run=run, tmp=scratch, released=RELEASED / "prosqa" / "slr") for a in argv]
    proc = attractor(*args, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, proc.stdout + err
    assert needle in err, err
    assert snapshot(run) == before
    for made in ("hf", "r", "imp", "cmp", "insp"):
        assert not (scratch / made).exists()


def _read_only(path: Path) -> bool:
    """Make ``path`` (recursively) unwritable, as a read-only mount or another user's run is:
    permission bits for a normal user, the immutable attribute for root (whom permission bits
    do not stop). False when neither is possible here."""
    import os
    import subprocess

    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return True
    return subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode == 0


def _writable_again(path: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    else:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


@pytest.mark.parametrize("argv", [["analyze", "{run}"], ["report", "{run}"], ["vote", "{run}"]],
                         ids=lambda a: a[0])
def test_a_read_only_run_is_refused_in_one_line_before_any_work(runs, tmp_path, argv):
    run = tmp_path / "run"
    shutil.copytree(runs["done"], run)
    if not _read_only(run):
        pytest.skip("neither permission bits nor chattr can make a directory read-only here")
    try:
        proc = attractor(*[a.format(run=run) for a in argv], check=False)
    finally:
        _writable_again(run)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, proc.stdout + err
    assert "cannot write" in err and str(run) in err
