"""The latent-loop checkpoints shipped for the tiny model: small float16 safetensors that load
onto the embedded model, and the evaluation tables they reproduce offline."""
import pandas as pd
import pytest
from safetensors import safe_open

from attractor.latent.checkpoint import (RELEASED, load_colar, load_hybrid, load_loop,
                                         read_meta, released_checkpoints)
from conftest import DATA_DIR, require_data
from helpers import attractor

# reads the shipped checkpoints and checks them against their shipped records: CI's second step
# (`pytest -m released`), out of the README's command to keep it under six minutes
pytestmark = pytest.mark.released

LOOPS = {"coconut", "slr", "slr-minus-timestep", "slr-minus-lora", "slr-minus-residual",
         "slr-minus-norm"}
# ProsQA's cot row is the embedded model itself; ProntoQA's is a CoT fine-tune shipped with it
RL = {"hrpo", "grpo"}  # GRPO-trained models, with and without HRPO's hybrid inputs
METHODS = {"prosqa": LOOPS | RL | {"no-cot", "colar"},
           "prontoqa": LOOPS | RL | {"no-cot", "cot", "colar"}}
DATA = {"prosqa": ("prosqa_valid.json", 300), "prontoqa": ("prontoqa_test.jsonl", 800)}


def test_released_checkpoints_are_small_float16_and_fit_the_tiny_model():
    total = sum(f.stat().st_size for f in RELEASED.rglob("*") if f.is_file())
    assert total <= 60 * 2**20
    for kind, methods in METHODS.items():
        dirs = released_checkpoints(kind)
        assert {read_meta(d)["method"] for d in dirs} == methods
        for d in dirs:
            meta = read_meta(d)
            assert meta["base_model"] == "tiny" and meta["train"]["task"].startswith("synthetic:")
            # every loop replaces the one-name backward proof; ProntoQA also ships a CoT on that
            # proof in the question's sentences (the longer, natural-language baseline)
            want_format = "backward-sentences" if d.name == "cot-sentences" else "backward-proof"
            assert meta["train"]["cot_format"] == want_format
            with safe_open(d / "model.safetensors", "pt") as f:
                tensors = [f.get_tensor(k) for k in f.keys()]
            assert all(str(t.dtype) == "torch.float16" for t in tensors if t.is_floating_point())
            if meta["method"] == "colar":  # the fine-tuned base and its latent head
                colar, _ = load_colar(d)
                assert colar.cfg.max_compression == 5 and colar.cfg.embeds_std > 0
                continue
            if meta["method"] in RL:  # the fine-tuned base and the gate (closed for grpo)
                hm, _ = load_hybrid(d)
                assert hm.cfg.gated == (meta["method"] == "hrpo")
                continue
            loop, _ = load_loop(d)
            assert loop.cfg.max_thoughts == (6 if meta["method"] in LOOPS else 1)


QUESTION_COLS = ["method", "checkpoint", "id", "hops", "correct", "answer", "forward_passes",
                 "iterations"]


def _per_question(path):
    frame = pd.read_parquet(path)
    frame = frame[[c for c in QUESTION_COLS if c in frame]]
    return frame.sort_values(["method", "checkpoint", "id"]).reset_index(drop=True)


@pytest.mark.parametrize("kind", ["prosqa", "prontoqa"])
def test_shipped_per_question_answers_add_up_to_the_shipped_table(kind):
    """The per-question answers shipped beside each table are the table's own questions."""
    want = pd.read_parquet(RELEASED / kind / "latent_eval.parquet")
    want = want[want["task"] == kind]
    per_q = pd.read_parquet(RELEASED / kind / "latent_questions.parquet")
    assert per_q.groupby(["method", "checkpoint"])["id"].nunique().eq(DATA[kind][1]).all()
    acc = per_q.groupby(["method", "checkpoint"])["correct"].mean()
    for r in want.itertuples():
        assert acc[(r.method, r.checkpoint)] == pytest.approx(r.accuracy), r.method


@pytest.mark.parametrize("kind", ["prosqa", "prontoqa"])
def test_released_loops_answer_a_benchmark_slice_exactly_as_shipped(kind, tmp_path):
    """``attractor latent eval`` on the first 16 benchmark questions: every method's answer,
    correctness, passes and iterations on every question equal the shipped per-question file
    (made by the full evaluation; the full table is the ``slow`` test below)."""
    name, _ = DATA[kind]
    require_data(name)
    attractor("latent", "eval", "--task", kind, "--limit", "16", "--data-dir", str(DATA_DIR),
              "--out", str(tmp_path))
    got = _per_question(tmp_path / "latent_questions.parquet")
    want = _per_question(RELEASED / kind / "latent_questions.parquet")
    want = want[want["id"].isin(set(got["id"]))].reset_index(drop=True)
    assert got["id"].nunique() == 16 and len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["prosqa", "prontoqa"])
def test_released_table_reproduces_on_the_benchmark(kind, tmp_path):
    """``attractor latent eval`` with no checkpoint named evaluates the released ones; every
    accuracy is within one question of the shipped table, passes and iterations match."""
    name, n = DATA[kind]
    require_data(name)
    attractor("latent", "eval", "--task", kind, "--data-dir", str(DATA_DIR),
              "--out", str(tmp_path))
    key = ["method", "cot_format"]  # two CoT rows on ProntoQA: one per chain-of-thought format
    got = pd.read_parquet(tmp_path / "latent_eval.parquet").set_index(key)
    want = pd.read_parquet(RELEASED / kind / "latent_eval.parquet")
    want = want[want["task"] == kind].set_index(key)
    assert list(got.index) == list(want.index) and (got["n"] == n).all()
    assert (got["accuracy"] - want["accuracy"]).abs().max() <= 1 / n + 1e-9
    assert (got["forward_passes"] - want["forward_passes"]).abs().max() <= 0.05
    loops = want["iterations"].notna()
    assert (got.loc[loops, "iterations"] - want.loc[loops, "iterations"]).abs().max() <= 0.05
    assert (got["checkpoint"] == want["checkpoint"]).all()
    pd.testing.assert_frame_equal(_per_question(tmp_path / "latent_questions.parquet"),
                                  _per_question(RELEASED / kind / "latent_questions.parquet"),
                                  check_dtype=False)
