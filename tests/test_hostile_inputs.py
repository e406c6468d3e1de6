"""Hostile inputs from a new-user trial (issue 33), one row each: the command, and what its
one-line error (exit 2) must say. Every value is refused by the one shared check of its
concept (:mod:`attractor.checks`) before anything is written. The next case is one more row."""
from __future__ import annotations

import pytest

from helpers import attractor

BIG = "1180591620717411303424"   # 2^70: overflowed torch's seed and Parquet's int64
CASES = [
    (["sample", "--task", "synthetic:prosqa:n=2", "--seed", BIG], "--seed must be in 0.."),
    (["sample", "--task", "synthetic:prosqa:n=2", "--seed", "-1"], "--seed must be in 0.."),
    (["sample", "--task", "synthetic:prosqa:n=2", "--top-k", "1000000000000"],
     "--top-k must be in 0..2147483647"),
    (["sample", "--task", "synthetic:prosqa:n=2", "--device", "banana"],
     "--device: expected auto, cpu, cuda or cuda:N"),
    (["capture", "{tmp}/run", "--device", "banana"], "--device: expected"),
    (["depth", "{tmp}/run", "--device", "cuda:x"], "--device: expected"),
    (["patch", "{tmp}/run", "--seed", BIG], "--seed must be in 0.."),
    (["probe", "{tmp}/run", "--seed", "-5"], "--seed must be in 0.."),
    (["latent", "eval", "--latent-temperature", "nan"],
     "--latent-temperature must be a finite number >= 0"),
    (["train", "consistency", "--beta", "nan"], "--beta must be a finite number >= 0"),
    (["train", "consistency", "--lr", "inf"], "--lr must be a finite number > 0"),
    (["train", "consistency", "--temperature", "inf"], "--temperature must be a finite number"),
    (["train", "consistency", "--device", "gpu"], "--device: expected"),
    (["latent", "train", "--lr", "nan", "--out", "{tmp}/out"], "--lr must be a finite number > 0"),
    (["train-tiny", "--lr", "nan", "--out", "{tmp}/out"], "--lr must be a finite number > 0"),
    (["latent", "seek", "--lr", "inf", "{tmp}/ckpt"], "--lr must be a finite number > 0"),
]


@pytest.mark.parametrize("argv,needle", CASES, ids=lambda c: " ".join(c) if isinstance(c, list)
                         else None)
def test_a_hostile_value_is_one_line_naming_the_option(tmp_path, argv, needle):
    args = [a.format(tmp=tmp_path) for a in argv]
    if args[0] in ("sample", "train"):
        args += ["--out", str(tmp_path / "out")]
    proc = attractor(*args, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert needle in err
    assert not (tmp_path / "out").exists()
