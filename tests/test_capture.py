import json

import numpy as np
import pandas as pd
import pytest
import torch

from attractor.models.tiny_recipe import ARCH
from attractor.capture.positions import parse_layers, parse_positions, resolve
from attractor.errors import ConfigError
from attractor.pipeline.capture import answer_token_index
from attractor.store.run_store import RunStore
from helpers import attractor, snapshot


@pytest.fixture(scope="module")
def sampled_run(random_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("cap") / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=3,seed=4",
              "--samples", "3", "--max-new-tokens", "40", "--out", str(run))
    return run


def test_captured_vectors_equal_output_hidden_states(sampled_run, random_model_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sampled_run, run)
    attractor("capture", str(run), "--layers", "all", "--positions",
              "frac:0.5,every:16,chunk:7,last:2")
    from attractor.models.load import load

    model, _ = load(str(random_model_dir), device="cpu")
    store = RunStore(run)
    idx = pd.read_parquet(run / "latents" / "index.parquet")
    df = store.rollouts()
    assert set(idx["layer"]) == set(range(model.config.num_hidden_layers + 1))
    for r in df.itertuples():
        ids = torch.tensor([list(r.prompt_token_ids) + list(r.completion_token_ids)])
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        mine = idx[(idx.question_id == r.question_id) & (idx.sample_id == r.sample_id)]
        for row in mine.itertuples():
            got = store.hidden_store.read_rows(row.shard, np.array([row.row]))[0]
            h = hs[row.layer][0]
            if pd.isna(row.token_index):  # chunk mean
                w, j = 7, row.occurrence
                p = len(r.prompt_token_ids)
                want = h[p + j * w: p + min((j + 1) * w, r.n_tokens)].mean(0)
            else:
                want = h[int(row.token_index)]
            np.testing.assert_allclose(got, want.numpy(), rtol=2e-3, atol=2e-3)


def test_latents_api_shape_order_and_resume(sampled_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sampled_run, run)
    attractor("capture", str(run), "--layers", "0,4", "--positions", "frac:0.25,last:1")
    store = RunStore(run)
    qid = store.rollouts()["question_id"].iloc[0]
    x = store.latents(qid, layer=4, position="frac:0.25")
    assert x.shape == (3, ARCH["hidden_size"]) and x.dtype == np.float32
    idx = pd.read_parquet(run / "latents" / "index.parquet")
    sub = idx[(idx.question_id == qid) & (idx.layer == 4) & (idx.position == "frac:0.25")]
    assert sorted(sub.sample_id) == [0, 1, 2]
    before = snapshot(run / "latents")
    proc = attractor("capture", str(run), "--layers", "0,4", "--positions", "frac:0.25,last:1")
    assert "captured 0 vectors" in proc.stdout
    assert snapshot(run / "latents") == before
    m = json.loads((run / "manifest.json").read_text())
    assert m["stages"]["capture"]["layers"] == [0, 4]


@pytest.mark.parametrize("args,needle", [
    (["--layers", "0,9"], "layers 0..4"),
    (["--positions", "frac:1.5"], "outside the completion"),
    (["--positions", "middle"], "--positions"),
])
def test_bad_capture_options(sampled_run, args, needle):
    before = snapshot(sampled_run)
    proc = attractor("capture", str(sampled_run), *args, check=False)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert snapshot(sampled_run) == before


def test_latents_from_another_model_are_refused(sampled_run, tmp_path):
    from transformers import Qwen2ForCausalLM

    from attractor.models.tiny_recipe import tiny_config
    from attractor.models.tiny_tokenizer import build_tokenizer

    other = tmp_path / "other"
    tok = build_tokenizer()
    torch.manual_seed(1)
    Qwen2ForCausalLM(tiny_config(len(tok), tok.eos_token_id)).save_pretrained(other)
    tok.save_pretrained(other)
    before = snapshot(sampled_run)
    proc = attractor("capture", str(sampled_run), "--model", str(other), check=False)
    assert proc.returncode == 2 and "weights differ" in proc.stderr
    assert snapshot(sampled_run) == before


def test_run_without_rollouts_is_refused(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    proc = attractor("capture", str(run), check=False)
    assert proc.returncode == 2 and "no rollouts" in proc.stderr


def test_imported_rollouts_are_tokenised_once(random_model_dir, tmp_path):
    src = tmp_path / "imp.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "Is Tom a x or y?", "answer": "Tom is a x.",
                               "responses": [" Every z is a x. ### Tom is a x.", " ### Tom is a y."]})
                   + "\n")
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--responses-field", "responses",
              "--kind", "prosqa")
    attractor("capture", str(run), "--model", str(random_model_dir), "--layers", "4",
              "--positions", "answer,last:1")
    m = json.loads((run / "manifest.json").read_text())
    assert m["stages"]["capture"]["retokenized"] is True
    assert RunStore(run).latents("a", layer=4, position="answer").shape == (2, ARCH["hidden_size"])


def test_position_resolution_and_answer_token(random_model):
    _, tok = random_model
    specs = parse_positions("frac:0,frac:1,every:4,chunk:4,last:3")
    ts = resolve(specs, prompt_len=10, completion_len=9, answer_token=None)
    by = {}
    for t in ts:
        by.setdefault(t.position, []).append((t.start, t.end))
    assert by["frac:0"] == [(10, 11)] and by["frac:1"] == [(18, 19)]
    assert by["every:4"] == [(13, 14), (17, 18)]
    assert by["chunk:4"] == [(10, 14), (14, 18), (18, 19)]
    assert by["last:3"] == [(16, 17), (17, 18), (18, 19)]
    assert resolve(specs, 10, 0, None) == []
    text = " Every a is b. ### Tom is a lempus."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    i = answer_token_index(tok, ids, text)
    assert tok.decode(ids[i + 1:]).strip() == "Tom is a lempus."
    assert answer_token_index(tok, ids, " no answer here") is None
    assert parse_layers("every:2", 5) == [0, 2, 4, 5]
    with pytest.raises(ConfigError):
        parse_layers("7", 4)
