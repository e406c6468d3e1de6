"""``attractor latent train`` and ``latent eval`` end to end on a random tiny model."""
import json

import pandas as pd
import pytest
from safetensors import safe_open

from attractor.tasks.prosqa import QUESTION_RE
from attractor.tasks.loaders import load_task
from helpers import attractor

TRAIN = ["--task", "synthetic:prosqa:n=8,seed=3", "--stages", "2", "--batch-size", "4"]


@pytest.fixture(scope="module")
def checkpoint(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("latent") / "slr"
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--thought-loss", "1",
              "--out", str(out))
    return out


def test_train_writes_a_float16_safetensors_checkpoint(checkpoint, random_model_dir):
    meta = json.loads((checkpoint / "loop.json").read_text())
    assert meta["method"] == "slr" and meta["loop"]["lora_rank"] > 0
    assert meta["loop"]["max_thoughts"] == 2 and meta["train"]["steps"] == 3 * 2  # 3 stages x 2
    assert meta["train"]["thought_loss"] == 1.0
    with safe_open(checkpoint / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        assert any(k.endswith(".b") for k in keys) and any(k.startswith("timestep") for k in keys)
        assert all(str(f.get_tensor(k).dtype) == "torch.float16" for k in keys
                   if f.get_tensor(k).is_floating_point())
    # rerunning the finished command resumes at its end and trains nothing more
    again = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN,
                      "--thought-loss", "1", "--out", str(checkpoint))
    assert "resumed at phase 3 of 3" in again.stdout
    assert json.loads((checkpoint / "loop.json").read_text()) == meta  # its record is kept


def test_a_soft_feedback_loop_trains_and_keeps_its_feedback(random_model_dir, tmp_path):
    """--feedback soft trains the loop through the lens's mix of embeddings; the checkpoint
    records it, so eval runs the loop it was trained as."""
    import torch

    from attractor.latent.checkpoint import load_loop

    out = tmp_path / "soft"
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--feedback", "soft",
              "--soft-temperature", "0.5", "--method", "coconut", "--out", str(out))
    meta = json.loads((out / "loop.json").read_text())
    assert meta["loop"]["feedback"] == "soft" and meta["loop"]["soft_temperature"] == 0.5
    loop, _ = load_loop(out)
    ids = [loop.tok("Every wumpus is a rorpus. Is Tom a rorpus or lempus?\n")["input_ids"]]
    with torch.no_grad():
        h = loop.think(ids, adaptive=False).states[0]
        x = loop.feed(h, 0)
    emb = loop.base.get_input_embeddings().weight
    probs = (loop.base.get_output_embeddings()(h) / 0.5).softmax(-1)
    assert torch.allclose(x, probs @ emb, atol=1e-5)  # coconut: no stabiliser touches the mix


def test_loop_overrides_train_that_loop_and_eval_names_it(random_model_dir, tmp_path):
    """--loop KEY=VALUE changes the method's stabilisers (here a rank-2 adapter on the MLP too,
    a learned concatenated timestep and the previous-state residual); the checkpoint records and
    reloads that loop, and eval names its row after the overrides."""
    from attractor.latent.checkpoint import load_loop
    from attractor.latent.slr.stabilisers import LoopLoRALinear

    out = tmp_path / "variant"
    loop_args = ["--loop", "lora_rank=2", "--loop", "lora_targets=q_proj,v_proj,gate_proj",
                 "--loop", "timestep=learned", "--loop", "timestep_mode=concat",
                 "--loop", "residual=prev", "--loop", "residual_alpha=0.25"]
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, *loop_args,
              "--out", str(out))
    meta = json.loads((out / "loop.json").read_text())
    cfg = meta["loop"]
    assert (cfg["lora_rank"], cfg["lora_targets"], cfg["timestep"], cfg["timestep_mode"],
            cfg["residual"], cfg["residual_alpha"]) == (
        2, ["q_proj", "v_proj", "gate_proj"], "learned", "concat", "prev", 0.25)
    assert cfg["norm_match"] is True and cfg["max_thoughts"] == 2  # the rest is slr's preset
    assert meta["variant"] == ("slr+lora_rank=2+lora_targets=q_proj,v_proj,gate_proj"
                               "+timestep=learned+timestep_mode=concat+residual=prev"
                               "+residual_alpha=0.25")
    loop, _ = load_loop(out)
    wrapped = [n for n, m in loop.base.named_modules() if isinstance(m, LoopLoRALinear)]
    assert any(n.endswith("mlp.gate_proj") for n in wrapped) and all(
        m.a.shape[1] == 2 for m in loop.base.modules() if isinstance(m, LoopLoRALinear))
    again = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, *loop_args[:2],
                      "--out", str(out), check=False)  # other overrides: another run
    assert again.returncode == 2 and "another configuration" in again.stderr + again.stdout
    attractor("latent", "eval", str(out), "--model", str(random_model_dir), "--task",
              "synthetic:prosqa:n=2,seed=1", "--out", str(tmp_path), "--soft-thoughts", "0")
    df = pd.read_parquet(tmp_path / "latent_eval.parquet")
    assert df["method"].tolist()[-2:] == [meta["variant"], meta["variant"] + "-adaptive"]


def test_eval_writes_the_table(checkpoint, random_model_dir, tmp_path):
    attractor("latent", "eval", str(checkpoint), "--model", str(random_model_dir), "--task",
              "synthetic:prosqa:n=4,seed=1", "--out", str(tmp_path), "--halting", "state",
              "--halting", "token")
    df = pd.read_parquet(tmp_path / "latent_eval.parquet")
    assert df["method"].tolist() == ["no-cot", "cot", "soft-thinking", "slr", "slr-adaptive",
                                     "slr-adaptive-token"]
    for col in ("accuracy", "forward_passes", "wall_s", "iterations", "final_change"):
        assert col in df.columns
    assert df["checkpoint"].tolist() == ["base"] * 3 + [str(checkpoint)] * 3
    assert df["cot_format"].tolist() == ["-"] * 3 + ["task"] * 3
    assert 1 <= df.set_index("method").loc["soft-thinking", "iterations"] <= 12
    slr = df.set_index("method").loc["slr"]
    assert slr["iterations"] == 2 and slr["forward_passes"] >= 1 + 2 + 1
    # one row per method and question, adding up to the table
    qs = pd.read_parquet(tmp_path / "latent_questions.parquet")
    assert len(qs) == 6 * 4 and qs["id"].nunique() == 4 and qs["hops"].between(3, 6).all()
    per = qs.groupby("method", sort=False)
    assert per["correct"].mean().tolist() == df["accuracy"].tolist()
    assert per["forward_passes"].mean().tolist() == pytest.approx(df["forward_passes"].tolist())
    assert (qs[qs["method"] == "slr"]["iterations"] == 2).all()
    assert qs[qs["method"] == "cot"]["iterations"].isna().all()


def test_baselines_train_on_the_same_data_and_a_loop_starts_from_cot(random_model_dir, tmp_path):
    cot, nocot, slr = tmp_path / "cot", tmp_path / "no-cot", tmp_path / "slr"
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--method", "cot",
              "--out", str(cot))
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--method", "no-cot",
              "--out", str(nocot))
    run = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--init",
                    str(cot), "--first-stage", "1", "--out", str(slr), "--dev-task",
                    "synthetic:prosqa:n=3,seed=1")
    curve = json.loads((slr / "loop.json").read_text())["train"]["stage_curve"]
    assert [(pt["stage"], pt["thoughts"]) for pt in curve] == [(1, 1), (2, 2)]
    assert all(0 <= pt["dev_accuracy"] <= 1 and pt["state_norm"] > 0 for pt in curve)
    assert "stage curve" in run.stdout
    steps = {d.name: json.loads((d / "loop.json").read_text())["train"]["steps"]
             for d in (cot, nocot, slr)}
    assert steps == {"cot": 2, "no-cot": 2, "slr": 4}  # stage 0 / direct / stages 1-2
    assert json.loads((slr / "loop.json").read_text())["init_method"] == "cot"
    # a second CoT, on another chain-of-thought format, is a row of its own
    proof = tmp_path / "cot-proof"
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--method", "cot",
              "--cot-format", "backward-proof", "--out", str(proof))
    attractor("latent", "eval", str(nocot), str(cot), str(slr), str(proof), "--model",
              str(random_model_dir), "--task", "synthetic:prosqa:n=3,seed=1", "--out",
              str(tmp_path))
    df = pd.read_parquet(tmp_path / "latent_eval.parquet")
    assert df["method"].tolist() == ["no-cot", "cot", "cot", "soft-thinking", "slr",
                                     "slr-adaptive"]
    assert df["checkpoint"].tolist() == [str(nocot), str(cot), str(proof), str(cot), str(slr),
                                         str(slr)]  # soft thoughts of the first CoT model
    assert df["cot_format"].tolist() == ["task", "task", "backward-proof", "task", "task", "task"]
    # with no CoT of the loop's own format, the base model's chain stays the loop's CoT row
    attractor("latent", "eval", str(slr), str(proof), "--model", str(random_model_dir),
              "--task", "synthetic:prosqa:n=3,seed=1", "--out", str(tmp_path))
    df = pd.read_parquet(tmp_path / "latent_eval.parquet")
    assert df["method"].tolist() == ["no-cot", "cot", "cot", "soft-thinking", "slr",
                                     "slr-adaptive"]
    assert df["checkpoint"].tolist() == ["base", "base", str(proof), "base", str(slr), str(slr)]


def test_checkpoint_on_another_base_model_is_refused(checkpoint, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from attractor.models.tiny_tokenizer import build_tokenizer

    tok = build_tokenizer()
    other = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2))
    other.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    proc = attractor("latent", "eval", str(checkpoint), "--model", str(tmp_path / "m"),
                     "--task", "synthetic:prosqa:n=2", check=False)
    assert proc.returncode == 2 and "another base model" in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [["--stages", "0"], ["--epsilon", "0"], ["--halting", "never"],
                                  ["--first-stage", "9"], ["--cot-format", "x"],
                                  ["--dev-limit", "0"], ["--thought-loss", "-1"],
                                  ["--feedback", "mixed"], ["--soft-temperature", "0"],
                                  ["--loop", "depth=3"], ["--loop", "lora_targets=gate"]])
def test_bad_training_options_exit_2(random_model_dir, tmp_path, args):
    proc = attractor("latent", "train", "--model", str(random_model_dir), "--task",
                     "synthetic:prosqa:n=2", "--out", str(tmp_path / "x"), *args, check=False)
    assert proc.returncode == 2 and len((proc.stderr + proc.stdout).strip().splitlines()) == 1


@pytest.mark.parametrize("items, message", [
    (["lora_rank"], "expected KEY=VALUE"), (["depth=3"], "unknown field 'depth'"),
    (["lora_rank=four"], "needs an integer"), (["residual=sideways"], "residual must be one of"),
    (["halting=kl"], "with --halting"), (["max_thoughts=3"], "with --stages"),
    (["norm_match=maybe"], "true or false"), (["lora_targets=,"], "comma-separated"),
    (["residual_alpha=x"], "needs a number")])
def test_bad_loop_overrides_name_the_field(items, message):
    """Every bad --loop value is a ConfigError (exit 2 at the CLI) naming what was expected,
    raised when the options are read, before any data or model loads."""
    from attractor.errors import ConfigError
    from attractor.latent.slr.train import LatentTrainConfig

    with pytest.raises(ConfigError, match=message):
        LatentTrainConfig(loop=items)
    with pytest.raises(ConfigError, match="no loop to configure"):
        LatentTrainConfig(method="cot", loop=["lora_rank=2"])
    assert LatentTrainConfig(loop=["norm_match=off"]).loop_config().norm_match is False


def test_task_without_steps_exits_2(random_model_dir, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    proc = attractor("latent", "train", "--model", str(random_model_dir), "--task", str(data),
                     "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "no CoT steps" in proc.stderr + proc.stdout


def test_inspect_reads_thoughts_and_measures_flip_rates(checkpoint, random_model_dir, tmp_path):
    attractor("latent", "inspect", str(checkpoint), "--model", str(random_model_dir), "--task",
              "synthetic:prosqa:n=4,seed=2", "--limit", "4", "--sigma", "0.01,100",
              "--out", str(tmp_path))
    th = pd.read_parquet(tmp_path / "thoughts.parquet")
    assert len(th) == 4 * 3 and set(th["thought"]) == {0, 1, 2}
    assert th["node"].notna().all() and th["top_tokens"].map(len).eq(5).all()
    # thought 0 (the state after the question) names the first option exactly when it is the
    # node 0 hops above it
    problems, _ = load_task("synthetic:prosqa:n=4,seed=2")
    first = {p.id: QUESTION_RE.search(p.question).group(2) for p in problems}
    t0 = th[th["thought"] == 0]
    assert (t0["on_chain_at_t"] == (t0["node"] == t0["question_id"].map(first))).all()
    assert ((th["frontier_mass"] >= 0) & (th["frontier_mass"] <= 1 + 1e-6)).all()
    rb = pd.read_parquet(tmp_path / "robustness.parquet")
    assert len(rb) == 2 * 2 and rb["flip_rate"].between(0, 1).all()
    assert (tmp_path / "flip_rate.png").stat().st_size > 1000
    assert (tmp_path / "lens.png").stat().st_size > 1000
    iv = pd.read_parquet(tmp_path / "interventions.parquet")
    assert len(iv) == (2 + 1) * 3 and set(iv["intervention"]) == {"zero", "mean", "swap"}
    assert iv["flip_rate"].between(0, 1).all() and iv["accuracy"].between(0, 1).all()
    assert (tmp_path / "interventions.png").stat().st_size > 1000
    page = (tmp_path / "index.html").read_text()
    assert page.count("<img") == 3 and "Top tokens of each thought" in page
    assert "Interventions on one thought" in page


def test_inspect_reads_prontoqa_thoughts_as_proof_steps(checkpoint, random_model_dir, tmp_path):
    from attractor.tasks.prontoqa_proof import prontoqa_backward_proof

    attractor("latent", "inspect", str(checkpoint), "--model", str(random_model_dir), "--task",
              "synthetic:prontoqa:n=3,seed=4", "--limit", "3", "--sigma", "0.1",
              "--out", str(tmp_path))
    th = pd.read_parquet(tmp_path / "thoughts.parquet")
    problems, _ = load_task("synthetic:prontoqa:n=3,seed=4")
    for p in problems:
        steps, _ = prontoqa_backward_proof(p)
        rows = th[th["question_id"] == p.id].sort_values("thought")
        # thought t is read against step t of the proof (step 0: the query's predicate)
        assert rows["proof_step"].tolist() == steps[:len(rows)]
        assert rows["proof_token_prob"].between(0, 1).all()
        top_is_step = [tt[0] == s.split()[0] for tt, s in zip(rows["top_tokens"], steps)]
        assert rows["on_proof_at_t"].tolist() == top_is_step
    assert (tmp_path / "lens.png").stat().st_size > 1000


def test_noise_on_a_thought_changes_the_state_it_feeds(random_model):
    import copy

    import torch

    from attractor.latent.slr.config import LoopConfig
    from attractor.latent.slr.interventions import intervening, noise
    from attractor.latent.slr.loop import LatentLoop

    model, tok = random_model
    loop = LatentLoop(copy.deepcopy(model).float().eval(), tok, LoopConfig(max_thoughts=3))
    ids = [tok("Every wumpus is a rorpus. Is Tom a rorpus or lempus?\n")["input_ids"]]
    with torch.no_grad():
        clean = loop.think(ids).states
        with intervening(loop, noise(2, 0.5, torch.Generator().manual_seed(0))):
            noisy = loop.think(ids).states
    assert torch.allclose(clean[1], noisy[1])          # before the perturbed thought: unchanged
    assert not torch.allclose(clean[2], noisy[2], atol=1e-3)  # the thought fed with noise moves


def test_bad_interventions_exit_2_before_any_work(checkpoint, random_model_dir, tmp_path):
    proc = attractor("latent", "inspect", str(checkpoint), "--model", str(random_model_dir),
                     "--task", "synthetic:prosqa:n=2", "--interventions", "zero,shuffle",
                     "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "--interventions" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["--halting", "never"], ["--epsilon", "0"]])
def test_bad_eval_options_exit_2(checkpoint, random_model_dir, args):
    proc = attractor("latent", "eval", str(checkpoint), "--model", str(random_model_dir),
                     "--task", "synthetic:prosqa:n=2", *args, check=False)
    assert proc.returncode == 2 and len((proc.stderr + proc.stdout).strip().splitlines()) == 1


def test_a_run_started_before_an_option_existed_resumes(checkpoint, random_model_dir, tmp_path):
    """A train-state written by an older attractor lacks the options added since (they held
    their defaults then), and a run directory may move or resume with other threads: it
    resumes instead of being refused."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(checkpoint, out)
    state = out / "train-state" / "state.json"
    saved = json.loads(state.read_text())
    del saved["config"]["loop"]
    state.write_text(json.dumps(saved))
    again = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN,
                      "--thought-loss", "1", "--out", str(out), "--threads", "1")
    assert "resumed at phase 3 of 3" in again.stdout


def test_a_train_state_whose_weights_do_not_fit_is_refused(checkpoint, random_model_dir, tmp_path):
    """Resuming loads the saved weights strictly (bar the tied LM head): a state with a stray
    key is a one-line error naming the train-state, not a silently half-loaded loop."""
    import shutil

    from safetensors.torch import load_file, save_file

    out = tmp_path / "damaged"
    shutil.copytree(checkpoint, out)
    weights = out / "train-state" / "model.safetensors"
    state = load_file(weights)
    state["stray.weight"] = next(iter(state.values())).clone()
    save_file(state, weights)
    proc = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN,
                     "--thought-loss", "1", "--out", str(out), check=False)
    assert proc.returncode == 2 and "train-state" in proc.stderr
    assert "stray.weight" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
