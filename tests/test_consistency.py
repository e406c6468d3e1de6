"""Training for stability (``attractor train consistency``): TTRL's majority reward and ScPO's
pairs and weighted loss equal their papers' definitions written out here independently; the
trainers run on TRL with the real embedded model; a killed run resumes exactly; bad input
gets one line and exit 2."""
import json
import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from attractor.consistency.scpo import scpo_loss
from attractor.consistency.votes import (answer_classes, majority_rewards, preference_pair)
from attractor.errors import ConfigError
from helpers import attractor

pytest.importorskip("trl")

TRAIN = "synthetic:prosqa:hops=7-8,n=12,seed=101"
HELD = "synthetic:prosqa:hops=7-8,n=6,seed=202"
SMALL = ["--task", TRAIN, "--eval-task", HELD, "--questions-per-step", "2", "--group", "4",
         "--eval-samples", "4", "--max-new-tokens", "48"]


def test_majority_reward_is_agreement_with_the_groups_most_common_answer():
    # TTRL: r_i = 1[y_i == argmax_y #{j: y_j = y}]; abstentions never win and earn 0
    assert majority_rewards(["a", "b", "a", None, "c"]) == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert majority_rewards(["b", "a", "a", "b"]) == [1.0, 0.0, 0.0, 1.0]  # tie: first seen
    assert majority_rewards([None, None]) == [0.0, 0.0]


def test_answer_classes_read_no_gold_and_merge_equal_math_answers():
    texts = ["so \\boxed{1/2}", "\\boxed{0.5}", "\\boxed{3}", "no answer here"]
    classes = answer_classes(texts, "math")
    assert classes[0] == classes[1] and classes[2] != classes[0] and classes[3] is None


def test_answer_classes_in_the_flexible_reading_vote_on_the_last_number_or_option():
    texts = ["7 + 5 = 12, so the result is 12.", "It is 12", "### 13", "no idea"]
    strict = answer_classes(texts, "arith")
    flex = answer_classes(texts, "arith", reading="flexible")
    assert strict[:2] == [None, None] and strict[2] is not None and strict[3] is None
    assert flex[0] == flex[1] is not None and flex[2] not in (None, flex[0]) and flex[3] is None
    q = "Is Tom a wumpus or rorpus?"
    opts = answer_classes(["Tom is a rorpus", "I think rorpus.", "wumpus"], "prosqa",
                          reading="flexible", question=q)
    assert opts[0] == opts[1] != opts[2] and None not in opts


def test_preference_pair_is_most_vs_least_voted_with_the_vote_margin_as_weight():
    classes = ["a", "b", "a", "c", "a", "b", None, "a"]
    pair = preference_pair(classes, threshold=0.5)
    # V(a) = 4, V(b) = 2, V(c) = 1 of k = 8: chosen the first 'a', rejected the first 'c'
    assert (pair.chosen, pair.rejected) == (0, 3)
    assert pair.weight == pytest.approx((4 - 1) / 8)
    assert preference_pair(classes, threshold=0.6) is None  # 4/8 below ScPO's filter
    assert preference_pair(["a", "a", None], 0.1) is None  # one answer: nothing to prefer
    assert preference_pair(["a", "b", "b", "a"], 0.1) is None  # a tie: no preference
    # the two top classes tie even though a least-voted class exists: no preference
    assert preference_pair(["a", "b", "a", "b", "c"], 0.1) is None
    assert preference_pair(["a", "b", "a", "b", "a", "c"], 0.1).rejected == 5


def test_scpo_loss_equals_the_papers_formula_written_out():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(4, 4, generator=g) * 30
    lengths = torch.tensor([3.0, 7.0, 1.0, 12.0])
    w = torch.tensor([0.25, 0.5, 0.125, 1.0])
    beta, alpha = 0.5, 1.0
    got = scpo_loss(lp[0], lp[1], lp[2], lp[3], lengths, w, beta, alpha)
    want = 0.0
    for i in range(4):
        m = beta * ((lp[0, i] - lp[2, i]) - (lp[1, i] - lp[3, i])).item()
        want += w[i].item() * (-math.log(1 / (1 + math.exp(-m)))
                               - alpha * lp[0, i].item() / lengths[i].item())
    assert got.item() == pytest.approx(want / 4, rel=1e-6)


def test_ttrl_trains_saves_and_scores_before_and_after(tmp_path):
    out = tmp_path / "ttrl"
    proc = attractor("train", "consistency", "--method", "ttrl", *SMALL, "--steps", "2",
                     "--ckpt-every", "1", "--lr", "1e-3", "--out", str(out))
    assert "greedy_correct" in proc.stdout and "tokens/s" in proc.stdout
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["unit"] for r in log] == [1, 2]
    assert all(0 <= r["reward"] <= 1 and r["tokens"] > 0 for r in log)
    rows = pd.read_parquet(out / "eval.parquet")
    assert set(rows.metric) >= {"greedy_correct", "pass@1", "maj@k", "consistent_wrong"}
    per_q = pd.read_parquet(out / "eval_questions.parquet")
    assert sorted(per_q.groupby("stage").size().items()) == [("after", 6), ("before", 6)]
    # the saved model loads as any local model and differs from the one it started from
    from attractor.models.load import load

    trained, _ = load(str(out / "model"), dtype="float32", device="cpu")
    base, _ = load("tiny", dtype="float32", device="cpu")
    diff = sum((a - b).abs().sum().item() for a, b in
               zip(trained.parameters(), base.parameters()))
    assert diff > 0
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.bin"))  # no pickles


def test_a_stopped_ttrl_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    args = ["train", "consistency", "--method", "ttrl", *SMALL, "--steps", "2",
            "--ckpt-every", "1", "--lr", "1e-3"]
    attractor(*args, "--out", str(tmp_path / "whole"))
    part = tmp_path / "part"
    proc = attractor(*args, "--out", str(part), "--stop-after", "1")
    assert "resume" in proc.stdout and not (part / "model").exists()
    proc = attractor(*args, "--out", str(part))
    assert "resumed after step 1 of 2" in proc.stdout
    a = load_file(tmp_path / "whole" / "train-state" / "model.safetensors")
    b = load_file(part / "train-state" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()
    lb = (part / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["reward"] for x in la] == [json.loads(x)["reward"] for x in lb]


def test_scpo_round_builds_weighted_pairs_and_trains(tmp_path):
    out = tmp_path / "scpo"
    attractor("train", "consistency", "--method", "scpo", *SMALL, "--group", "8",
              "--rounds", "1", "--epochs", "1", "--vote-threshold", "0.25", "--lr", "1e-3",
              "--out", str(out))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    head = log[0]
    assert head["round"] == 1 and head["pairs"] > 0 and 0 < head["mean_weight"] <= 1
    steps = [r for r in log if "loss" in r]
    assert len(steps) == math.ceil(head["pairs"] / 2)
    assert (out / "model" / "model.safetensors").exists()


def test_scpo_first_step_loss_is_the_weighted_loss_at_the_reference(tmp_path):
    """At the first step the policy is its own reference: every DPO margin is 0, so ScPO's loss
    is mean_i w_i (log 2 - alpha log pi(y+_i) / |y+_i|), computed here from the model directly."""
    from trl import DPOConfig

    from attractor.consistency.scpo import WeightedPairs, scpo_trainer_class
    from attractor.consistency.trl_support import shared_args
    from attractor.models.load import load
    from datasets import Dataset
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    model, tok = load("tiny", dtype="float32", device="cpu")
    text = [("Is Tom a wumpus or rorpus?\n", " wumpus Tom ### Tom is a wumpus.",
             " rorpus ### Tom is a rorpus.", 0.75),
            ("Is Bob a lempus or zumpus?\n", " ### Bob is a lempus.",
             " zumpus Bob ### Bob is a zumpus.", 0.25)]

    def ids(s):
        return tok(s, add_special_tokens=False)["input_ids"]

    # the rows build_pairs makes: token ids, each completion ending on its stop token
    rows = [{"prompt_ids": ids(p), "chosen_ids": ids(c) + [tok.eos_token_id],
             "rejected_ids": ids(r) + [tok.eos_token_id], "weight": w} for p, c, r, w in text]
    args = DPOConfig(**shared_args(str(tmp_path), 0, "cpu", 1e-9), per_device_train_batch_size=2,
                     max_steps=1, beta=0.5, precompute_ref_log_probs=True,
                     remove_unused_columns=False, max_length=None)
    trainer = scpo_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                   processing_class=tok, data_collator=WeightedPairs(
                                       DataCollatorForPreference(pad_token_id=tok.pad_token_id)))
    trainer.nll_weight = 1.0
    # trained on exactly these ids (TRL's text tokenisation is skipped)
    assert [trainer.train_dataset[i]["chosen_ids"] for i in range(2)] == \
        [r["chosen_ids"] for r in rows]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        got = trainer.compute_loss(model, batch).item()
        want = 0.0
        for r in rows:
            p, c = r["prompt_ids"], r["chosen_ids"]
            seq = torch.tensor([p + c])
            logp = model(seq).logits[0, :-1].log_softmax(-1).gather(
                -1, seq[0, 1:, None])[-len(c):, 0].sum().item()
            want += r["weight"] * (math.log(2) - logp / len(c))
    assert got == pytest.approx(want / 2, rel=1e-4)


def test_scpo_pairs_are_the_sampled_token_ids_with_their_stop_token():
    """A pair replays what the model produced: the sampling prompt's ids and each completion's
    ids plus the stop token that ended it (a decode and re-encode is not exact on BPE: 29 of
    176 SmolLM2 completions measured came back as other ids)."""
    from attractor.config import SamplingConfig
    from attractor.consistency.scpo import build_pairs
    from attractor.engines.hf import HFEngine
    from attractor.models.load import load
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    model, tok = load("tiny", dtype="float32", device="cpu")
    problems, _ = load_task("synthetic:prosqa:n=6,seed=3")
    groups = HFEngine(model, tok).generate(
        [p.id for p in problems], [prompt_ids(p, tok) for p in problems],
        SamplingConfig(samples=6, temperature=1.0, max_new_tokens=64, seed=1))
    rows, pairs = build_pairs(problems, groups, threshold=0.0)
    assert rows and len(pairs) == 6
    for row in rows:
        i = [p.id for p in problems].index(row["qid"])
        pair, group = pairs[i], groups[i]
        for key, k in (("chosen_ids", pair.chosen), ("rejected_ids", pair.rejected)):
            r = group[k]
            stop = [r.stop_token_id] if r.finish_reason == "stop" else []
            assert r.finish_reason != "stop" or r.stop_token_id in HFEngine(model, tok).stop_ids
            assert row[key] == list(r.completion_token_ids) + stop
        assert row["prompt_ids"] == prompt_ids(problems[i], tok)


def test_bad_input_gets_one_line_and_exit_2(tmp_path):
    proc = attractor("train", "consistency", "--method", "ttrl", "--task", TRAIN,
                     "--eval-task", TRAIN, "--out", str(tmp_path / "a"), check=False)
    assert proc.returncode == 2 and "shares 12 questions" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = attractor("train", "consistency", "--group", "1", "--out", str(tmp_path / "b"),
                     check=False)
    assert proc.returncode == 2 and "--group" in proc.stderr
    # a run directory holding a run with other options is refused, and left as it was
    out = tmp_path / "c"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"method": "scpo"}))
    proc = attractor("train", "consistency", *SMALL, "--out", str(out), check=False)
    assert proc.returncode == 2 and "other options" in proc.stderr
    assert json.loads((out / "run.json").read_text()) == {"method": "scpo"}


def test_a_model_without_answers_is_refused_at_the_first_step(random_model_dir, tmp_path):
    proc = attractor("train", "consistency", "--method", "ttrl", *SMALL, "--steps", "1",
                     "--model", str(random_model_dir), "--eval-samples", "2",
                     "--max-new-tokens", "8", "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "majority-vote reward is undefined" in proc.stderr


def test_an_old_trl_is_refused_naming_the_version_needed(monkeypatch):
    import trl

    from attractor.consistency.trl_support import TRL_NEEDED, require_trl

    monkeypatch.setattr(trl, "__version__", "0.9.0")
    with pytest.raises(ConfigError, match=f"needs trl>={TRL_NEEDED}.*found trl 0.9.0"):
        require_trl("GRPOTrainer", "ttrl")


def test_a_refused_run_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
    """run.json is written once the run starts: a refusal (here a task file that does not
    exist) leaves --out free for the corrected command."""
    out = tmp_path / "r"
    bad = attractor("train", "consistency", "--method", "ttrl", "--task",
                    str(tmp_path / "missing.jsonl"), "--out", str(out), check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (out / "run.json").exists()
