"""The latent-loop checkpoints shipped for the tiny model: small float16 safetensors that load
onto the embedded model, and the evaluation table they reproduce offline."""
import json

import pandas as pd
from safetensors import safe_open

from attractor.latent.checkpoint import RELEASED, load_loop, read_meta, released_checkpoints
from conftest import DATA_DIR, require_data
from helpers import attractor

METHODS = {"no-cot", "coconut", "slr", "slr-minus-timestep", "slr-minus-lora",
           "slr-minus-residual", "slr-minus-norm"}


def test_released_checkpoints_are_small_float16_and_fit_the_tiny_model():
    dirs = released_checkpoints("prosqa")
    assert {read_meta(d)["method"] for d in dirs} == METHODS
    total = sum(f.stat().st_size for f in RELEASED.rglob("*") if f.is_file())
    assert total <= 60 * 2**20
    for d in dirs:
        meta = read_meta(d)
        assert meta["base_model"] == "tiny" and meta["train"]["task"].startswith("synthetic:")
        with safe_open(d / "model.safetensors", "pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys()]
        assert all(str(t.dtype) == "torch.float16" for t in tensors if t.is_floating_point())
        loop, _ = load_loop(d)
        assert loop.cfg.max_thoughts == (1 if meta["method"] == "no-cot" else 6)


def test_released_table_reproduces_on_prosqa_valid(tmp_path):
    """``attractor latent eval`` with no checkpoint named evaluates the released ones; every
    accuracy is within one question of the shipped table, passes and iterations match."""
    require_data("prosqa_valid.json")
    attractor("latent", "eval", "--task", "prosqa", "--data-dir", str(DATA_DIR),
              "--out", str(tmp_path))
    got = pd.read_parquet(tmp_path / "latent_eval.parquet").set_index("method")
    want = pd.read_parquet(RELEASED / "prosqa" / "latent_eval.parquet")
    want = want[want["task"] == "prosqa"].set_index("method")
    assert list(got.index) == list(want.index)
    assert (got["accuracy"] - want["accuracy"]).abs().max() <= 1 / 300 + 1e-9
    assert (got["forward_passes"] - want["forward_passes"]).abs().max() <= 0.05
    loops = want["iterations"].notna()
    assert (got.loc[loops, "iterations"] - want.loc[loops, "iterations"]).abs().max() <= 0.05
    record = json.loads((RELEASED / "prosqa" / "slr" / "loop.json").read_text())
    assert record["train"]["cot_format"] == "backward-proof"
