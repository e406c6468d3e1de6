"""The shipped tiny model: a real HF model, small, whose greedy CoT answers are well-formed and
whose recorded ProsQA accuracy reproduces."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from attractor.models.load import TINY_DIR, load
from attractor.grading.extract import extract_answer
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


@pytest.mark.released
def test_greedy_answers_reproduce_the_shipped_record():
    """Greedy accuracy and the count of completions without an answer equal the ones recorded in
    training.json, and the model is the reasoner the project promises (>= 0.75 greedy CoT on the
    released split; chance is 0.5)."""
    require_data("prosqa_valid.json")
    record = json.loads((TINY_DIR / "training.json").read_text())["prosqa_valid"]
    model, tok = load("tiny", device="cpu")
    problems, _ = load_task("prosqa", data_dir=DATA_DIR)
    acc, texts = greedy_accuracy(model, tok, problems, max_new_tokens=160)
    no_answer = sum(extract_answer(t, "prosqa") is None for t in texts)
    assert abs(no_answer - record["no_answer"]) <= 2
    assert abs(acc - record["overall"]) <= 2 / len(problems)
    assert acc >= 0.75


def test_training_record_ships_with_the_model():
    record = json.loads((TINY_DIR / "training.json").read_text())
    assert record["command"].startswith("attractor train-tiny")
    pv = record["prosqa_valid"]
    assert pv["n"] == 300
    assert set(pv["by_hops"]) == {"3", "4", "5", "6"}
    assert sum(v["n"] for v in pv["by_hops"].values()) == 300
    # the overall accuracy is the hop groups' accuracies weighted by their sizes
    assert pv["overall"] == pytest.approx(
        sum(v["accuracy"] * v["n"] for v in pv["by_hops"].values()) / 300)
    assert (TINY_DIR / "TRAINING.md").read_text().startswith("# The embedded tiny model")
