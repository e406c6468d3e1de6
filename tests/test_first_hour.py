"""What a researcher meets in the first hour: runs that refuse to be analysed half-done, metrics
that refuse to be read stale, inputs checked before anything is written, a batch cap that really
caps, and signals that say when they cannot be defined."""
from __future__ import annotations

import json
import shutil
import stat

import numpy as np
import pandas as pd
import pytest

from attractor.cli import main
from attractor.config import RunConfig, SamplingConfig
from attractor.errors import UserError
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.capture import run_capture
from attractor.pipeline.results import LabelCheck
from attractor.pipeline.sample import run_sample
from helpers import drop_shard
from attractor.store.run_store import RunStore

TASK = "synthetic:prosqa:n=3,seed=8"
COLS = ["question_id", "sample_id", "completion_token_ids", "text", "token_confidences"]


def _sample(out, max_batch_rows: int = 256, samples: int = 4, **kw):
    cfg = RunConfig(task=TASK, model="tiny", sampling=SamplingConfig(
        samples=samples, temperature=1.0, max_new_tokens=48, seed=0), **kw)
    return run_sample(cfg, str(out), max_batch_rows=max_batch_rows, log=lambda _: None,
                      show_progress=False)


def _rows(run) -> pd.DataFrame:
    df = RunStore(run).rollouts(COLS).sort_values(["question_id", "sample_id"])
    return df.reset_index(drop=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hour") / "run"
    _sample(out, max_batch_rows=8)  # 2 questions per shard: two shards
    return out


def _same(a, b) -> None:
    x, y = _rows(a), _rows(b)
    assert len(x) == len(y) == 12
    for c in ("question_id", "sample_id", "text"):
        assert x[c].tolist() == y[c].tolist(), c
    assert [list(v) for v in x["completion_token_ids"]] == \
        [list(v) for v in y["completion_token_ids"]]
    # other batch shapes round differently in the last float bits: the same tokens, confidences
    # equal to float32 precision
    for u, v in zip(x["token_confidences"], y["token_confidences"]):
        assert np.allclose(u, v, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- --max-batch-rows
def test_a_question_s_samples_split_across_batches_give_the_same_rollouts(full_run, tmp_path):
    _sample(tmp_path / "capped", max_batch_rows=3)  # 4 samples of one question in 3 + 1
    _same(full_run, tmp_path / "capped")


def test_a_run_resumes_with_a_smaller_batch(full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    shards = RunStore(run).rollout_shards()
    assert len(shards) == 2
    drop_shard(shards[-1])  # as if killed (out of memory) before the second shard
    res = _sample(run, max_batch_rows=2)
    assert res.new_rollouts == 4
    _same(full_run, run)
    m = json.loads((run / "manifest.json").read_text())
    assert "questions_per_shard" not in m["identity"]


# ---------------------------------------------------------------- partial and stale results
def test_analyze_refuses_a_run_whose_sampling_has_not_finished(full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    drop_shard(RunStore(run).rollout_shards()[-1])
    RunStore(run).update_stage("sample", status="running")
    with pytest.raises(UserError, match=r"2 of 3 questions.*same `attractor sample` command"):
        run_analyze(str(run), window=8)
    assert not (run / "metrics").exists()
    summary = run_analyze(str(run), window=8, partial=True)
    assert summary["partial"] is True and summary["notes"][0].startswith("PARTIAL")
    assert summary["n_questions"] == 2


def test_readers_refuse_stale_metrics(full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    run_analyze(str(run), window=8)
    from attractor.pipeline.vote import run_vote

    run_vote(str(run), draws=10)  # fresh: reads fine
    run_capture(str(run), layers="4", positions="last:1", show_progress=False,
                log=lambda _: None)
    for argv in (["vote", str(run)], ["report", str(run)]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "run `attractor analyze" in capsys.readouterr().err


# ---------------------------------------------------------------- validation before writing
@pytest.mark.parametrize("argv,needle", [
    (["sample", "--task", TASK, "--temperature", "nan"], "--temperature"),
    (["sample", "--task", TASK, "--temperature", "inf"], "--temperature"),
    (["sample", "--task", "synthetic:prosqa:n=2,colour=3"], "unknown option 'colour'"),
    (["sample", "--task", TASK, "--max-batch-rows", "0"], "--max-batch-rows"),
    (["demo", "--questions", "0"], "--questions"),
])
def test_bad_options_are_one_line_errors_that_write_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and needle in err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    with pytest.raises(SystemExit):
        main(["sample", "--task", TASK, "--out", str(f)])
    assert "is a file" in capsys.readouterr().err and f.read_text() == "keep me"


def test_a_manifest_only_run_does_not_block_the_corrected_command(tmp_path):
    run = tmp_path / "run"
    _sample(run, samples=4)
    for s in RunStore(run).rollout_shards():
        s.unlink()  # as if the first command died before writing a rollout
    _sample(run, samples=3)  # other options: accepted, nothing was stored
    assert len(_rows(run)) == 9


def test_latent_checkpoint_without_weights(tmp_path, capsys):
    from attractor.latent.checkpoint import RELEASED

    ck = tmp_path / "ck"
    shutil.copytree(RELEASED / "prosqa" / "slr", ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(SystemExit) as exit_:
        main(["latent", "eval", str(ck), "--task", "synthetic:prosqa:n=2"])
    assert exit_.value.code == 2 and "no model.safetensors" in capsys.readouterr().err


def test_import_of_zero_rollouts_is_an_error(tmp_path, capsys):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"id": "1", "question": "q", "answer": "1", "responses": []}) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main(["import", str(f), "--out", str(tmp_path / "r"), "--responses-field", "responses"])
    assert exit_.value.code == 2 and "no rollouts" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_uncaptured_layer_or_position_is_an_error(full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    run_capture(str(run), layers="4", positions="last:1", show_progress=False,
                log=lambda _: None)
    for opt in (["--layer", "99"], ["--position", "frac:0.5"]):
        with pytest.raises(SystemExit) as exit_:
            main(["early-stop", str(run), "--window", "4"] + opt)
        assert exit_.value.code == 2 and "not captured" in capsys.readouterr().err


# ---------------------------------------------------------------- undefined signals said once
def test_signals_that_cannot_be_defined_are_said(full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    run_capture(str(run), layers="all", positions="chunk:500", show_progress=False,
                log=lambda _: None)
    notes = run_analyze(str(run), window=2048)["notes"]
    assert any(n.startswith("trajectory signals undefined") for n in notes)
    assert any("--window 2048 is at least as long as every trace" in n for n in notes)
    assert not any("--window" in n for n in run_analyze(str(run), window=4)["notes"])


def test_latent_shards_are_readable_like_the_other_files(full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    run_capture(str(run), layers="4", positions="last:1", show_progress=False,
                log=lambda _: None)
    shard = next((run / "latents").glob("part-*.safetensors"))
    index = run / "latents" / "index.parquet"
    assert stat.S_IMODE(shard.stat().st_mode) == stat.S_IMODE(index.stat().st_mode)


def test_numbers_print_cleanly():
    from attractor.ui import fmt

    assert fmt(-0.0001) == "0.000" and fmt(np.int64(3)) == "3" and fmt(np.float32(0.5)) == "0.500"


def test_import_reports_where_grading_disagrees_with_the_labels(tmp_path):
    from attractor.pipeline.import_rollouts import run_import

    f = tmp_path / "x.jsonl"
    rows = [{"qid": "1", "problem": "1+1?", "gold": "2", "out": o, "ok": ok}
            for o, ok in (("so \\boxed{2}", True), ("so \\boxed{3}", True), ("\\boxed{4}", False))]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_import(str(f), str(tmp_path / "r"), response_field="out", id_field="qid",
                     question_field="problem", answer_field="gold", correct_field="ok")
    assert res.label_check == LabelCheck(labelled=3, disagree=1, first=["1/1"])


def test_a_mismatch_names_the_users_option(full_run, tmp_path):
    from attractor.errors import RunMismatchError

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    with pytest.raises(RunMismatchError, match="--samples 4.*--samples 5"):
        _sample(run, samples=5)


def test_thoughts_are_numbered_from_one_in_the_api(released_loop_ids):
    import torch

    from attractor.latent.slr.interventions import intervening, recorder, zero

    loop, ids = released_loop_ids
    fed: dict = {}
    with torch.no_grad(), intervening(loop, recorder(fed)):
        clean = loop.think(ids, adaptive=False).states
    assert sorted(fed) == list(range(1, loop.cfg.max_thoughts + 1))
    with torch.no_grad(), intervening(loop, zero(1)):  # the first thought, made from states[0]
        got = loop.think(ids, adaptive=False).states
    assert torch.equal(clean[0], got[0]) and not torch.allclose(clean[1], got[1], atol=1e-4)


@pytest.fixture(scope="module")
def released_loop_ids():
    from attractor.latent.checkpoint import RELEASED, load_loop
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    loop, _ = load_loop(RELEASED / "prosqa" / "slr")
    problems, _ = load_task("synthetic:prosqa:n=3,seed=5")
    return loop, [prompt_ids(p, loop.tok, True) for p in problems]
