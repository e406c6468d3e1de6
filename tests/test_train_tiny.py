import json

import torch
from safetensors.torch import load_file

from attractor.models.train_tiny import TinyTrainConfig, encode_batch, train_tiny
from attractor.models.tiny_tokenizer import build_tokenizer, domain_words
from attractor.tasks.prosqa import generate_prosqa


def _cfg(out, steps):
    return TinyTrainConfig(out=str(out), steps=steps, batch_size=3, eval_every=1000, eval_size=2,
                           ckpt_every=2, threads=1, warmup=2, lookup_steps=3, curriculum=2)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    # the run crosses from the look-up warm-up (steps 1-3) to ProsQA graphs (4-5)
    straight = train_tiny(_cfg(tmp_path / "a", 5), log=lambda _: None)
    train_tiny(_cfg(tmp_path / "b", 2), log=lambda _: None)   # "killed" after step 2 ...
    resumed = train_tiny(_cfg(tmp_path / "b", 5), log=lambda _: None)  # ... and run again
    assert straight["steps"] == resumed["steps"] == 5
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 5


def test_tokenizer_makes_every_domain_word_one_token_and_round_trips():
    tok = build_tokenizer()
    for w in domain_words():
        assert len(tok(" " + w)["input_ids"]) == 1, w
        assert len(tok(w)["input_ids"]) == 1, w
    text = "Find the sum of all integer bases $b>9$ for which $17_{b}$ divides $97_{b}$. ü"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: any text round-trips


def test_training_labels_cover_only_the_completion():
    tok = build_tokenizer()
    problems = generate_prosqa(2, seed=0)
    batch = encode_batch(problems, tok, seed=0)
    for i, p in enumerate(problems):
        n_prompt = len(tok(p.question + "\n")["input_ids"])
        labels = batch["labels"][i]
        assert (labels[:n_prompt] == -100).all()
        target = labels[labels != -100].tolist()
        assert target[-1] == tok.eos_token_id
        assert tok.decode(target[:-1]).endswith(f"### {p.gold}")


def test_lookup_warmup_problems_are_answerable_from_their_sentences():
    import random

    from attractor.models.tiny_recipe import lookup_sentences

    for seed in range(50):
        text, pairs = lookup_sentences(random.Random(seed), 12)
        assert text.count(".") == 12 and pairs
        for concept, parent in pairs:
            # the parent is the subject of the one sentence whose object is the concept
            subjects = [s.split(" is a ")[0].split()[-1] for s in text.split(". ")
                        if s.rstrip(".").endswith(" is a " + concept)]
            assert subjects == [parent]


def test_root_drill_marks_only_the_person_asked_about():
    import random

    from attractor.models.train_tiny import _root_drill_row

    tok = build_tokenizer()
    hash_id = tok(" ###", add_special_tokens=False)["input_ids"][0]
    dot_id = tok(" .", add_special_tokens=False)["input_ids"][0]
    for p in generate_prosqa(10, seed=4):
        _, ids, labels = _root_drill_row(p, tok, random.Random(0))
        marked = [ids[i - 1] for i, lab in enumerate(labels) if lab == hash_id]
        root = tok(" " + p.meta["idx_to_symbol"][p.meta["root"]],
                   add_special_tokens=False)["input_ids"]
        assert marked == root
        n_people = len(set(range(len(p.meta["idx_to_symbol"]))) - {b for _, b in p.meta["edges"]})
        assert labels.count(dot_id) == n_people - 1
