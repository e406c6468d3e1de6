"""The shipped tiny model: a real HF model, small, and a real ProsQA reasoner."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from attractor.models.load import TINY_DIR, load
from attractor.models.train_tiny import greedy_accuracy
from attractor.tasks.loaders import load_task
from conftest import DATA_DIR, require_data


def test_loads_with_plain_transformers_and_is_small():
    size = sum(p.stat().st_size for p in TINY_DIR.iterdir() if p.is_file())
    assert size <= 25 * 2**20
    model = AutoModelForCausalLM.from_pretrained(TINY_DIR)
    tok = AutoTokenizer.from_pretrained(TINY_DIR)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.eos_token_id is not None and tok.eos_token_id < model.config.vocab_size
    assert model.config.bos_token_id == model.config.eos_token_id == tok.eos_token_id


def test_save_load_round_trip_keeps_logits(tmp_path):
    model, tok = load("tiny", device="cpu")
    ids = tok("Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?\n",
              return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        after = again(ids).logits
    assert torch.equal(before, after)


def test_greedy_cot_accuracy_on_released_prosqa():
    require_data("prosqa_valid.json")
    model, tok = load("tiny", device="cpu")
    problems, _ = load_task("prosqa", data_dir=DATA_DIR, limit=60)
    acc, texts = greedy_accuracy(model, tok, problems, max_new_tokens=128)
    assert acc >= 0.75, f"greedy CoT accuracy {acc:.2f} on the first 60 ProsQA questions"
    assert all("###" in t for t in texts[:10])


def test_training_record_ships_with_the_model():
    record = json.loads((TINY_DIR / "training.json").read_text())
    assert record["command"].startswith("attractor train-tiny")
    assert record["prosqa_valid"]["overall"] >= 0.75
    assert set(record["prosqa_valid"]["by_hops"]) >= {"3", "4", "5"}
