"""LatentSeek on the released ProsQA SLR loop (real answers, real sampling and gradients)."""
import pandas as pd
import pytest

from attractor.errors import ConfigError
from attractor.latent.checkpoint import RELEASED, load_loop
from attractor.latent.seek.search import SeekConfig, rewards, seek, summary
from attractor.tasks.loaders import load_task
from attractor.tasks.prompts import prompt_ids
from helpers import attractor

# reads the shipped checkpoints and checks them against their shipped records: CI's second step
# (`pytest -m released`), out of the README's command to keep it under six minutes
pytestmark = pytest.mark.released

SLR = RELEASED / "prosqa" / "slr"


@pytest.fixture(scope="module")
def slr():
    loop, _ = load_loop(SLR)
    problems, _ = load_task("synthetic:prosqa:n=10,seed=5")
    return loop, problems, [prompt_ids(p, loop.tok, True) for p in problems]


def test_vote_rewards_the_majority_and_never_a_missing_answer():
    problems, _ = load_task("synthetic:prosqa:n=1,seed=5")
    got = rewards(["a", "b", "a", None], problems * 4, ["", "", "", ""], "vote")
    assert got == [1.0, 0.0, 1.0, 0.0]
    assert rewards([None, None], problems * 2, ["", ""], "vote") == [0.0, 0.0]


def test_no_updates_reproduce_the_loops_own_answers(slr):
    loop, problems, prompts = slr
    df = seek(loop, problems, prompts, SeekConfig(iterations=0, batch=5))
    assert len(df) == len(problems) and (df["updates"] == 0).all()
    assert (df["answer_before"] == df["answer_after"]).all()
    # each question: its clean run, one round of samples and the final greedy answer
    assert (df["forward_passes"] > df["clean_forward_passes"] * 2).all()


def test_oracle_reward_moves_wrong_answers_to_right_ones(slr):
    """The gradient reaches the thoughts: with the gold answer as reward, thoughts that give a
    wrong answer are pushed to ones that give the right one (the paper's upper bound)."""
    loop, problems, prompts = slr
    df = seek(loop, problems, prompts, SeekConfig(reward="oracle", iterations=3))
    assert df["correct_after"].sum() > df["correct_before"].sum()
    assert (df.loc[df["updates"] > 0, "correct_before"] == False).any()  # noqa: E712
    s = summary(df, "oracle")
    assert s["method"].tolist() == ["loop", "latentseek-oracle"]
    assert s["forward_passes"].iloc[1] > s["forward_passes"].iloc[0]


def test_vote_only_updates_questions_whose_samples_disagree(slr):
    loop, problems, prompts = slr
    df = seek(loop, problems, prompts, SeekConfig(reward="vote", iterations=3, samples=6))
    agreed = df["final_reward"] == 1.0
    assert df["final_reward"].between(0, 1).all() and agreed.any()
    # a question stops as soon as its samples agree (mean reward 1 >= threshold)
    assert (df.loc[df["updates"] == 0, "final_reward"] >= 0.9).all()


@pytest.mark.parametrize("field,value", [("reward", "gold"), ("iterations", -1),
                                         ("samples", 0), ("lr", 0.0), ("threshold", 1.5)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        SeekConfig(**{field: value})


def test_seek_command_writes_the_table(tmp_path):
    attractor("latent", "seek", str(SLR), "--task", "synthetic:prosqa:n=4,seed=3", "--limit",
              "4", "--iterations", "1", "--samples", "2", "--out", str(tmp_path))
    df = pd.read_parquet(tmp_path / "latentseek.parquet")
    assert len(df) == 4 and {"correct_before", "correct_after", "updates"} <= set(df.columns)


def test_seek_command_bad_reward_exits_2(tmp_path):
    proc = attractor("latent", "seek", str(SLR), "--reward", "gold", "--out", str(tmp_path / "o"),
                     check=False)
    assert proc.returncode == 2 and "--reward" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["seek", "inspect"])
def test_a_baseline_checkpoint_is_refused(command, tmp_path):
    proc = attractor("latent", command, str(RELEASED / "prontoqa" / "cot"), "--task", "prontoqa",
                     "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "plain model with no thoughts" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_a_killed_run_resumes_to_the_same_table(slr, tmp_path):
    from attractor.errors import UserError

    loop, problems, prompts = slr
    cfg = SeekConfig(iterations=2, samples=3, batch=4)
    whole = seek(loop, problems[:10], prompts[:10], cfg)
    first = seek(loop, problems[:10], prompts[:10], cfg, out=tmp_path)
    parts = sorted((tmp_path / "latentseek.parts").glob("*.parquet"))
    assert len(parts) == 3
    cols = [c for c in whole.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(first[cols], whole[cols])  # each batch seeds its own sampler
    # a kill after the second batch: the third is redone, the first two are read back
    parts[-1].unlink()
    (tmp_path / "latentseek.parquet").unlink()
    stored = pd.read_parquet(parts[0])
    again = seek(loop, problems[:10], prompts[:10], cfg, out=tmp_path)
    pd.testing.assert_frame_equal(again[cols], whole[cols])
    assert (again["wall_s"].iloc[:4] == stored["wall_s"]).all()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "latentseek.parquet"), again)
    with pytest.raises(UserError, match="other settings, checkpoint or questions"):
        seek(loop, problems[:10], prompts[:10], SeekConfig(iterations=3, batch=4), out=tmp_path)
    with pytest.raises(UserError, match="other settings, checkpoint or questions"):
        seek(loop, problems[:10], prompts[:10], cfg, out=tmp_path, source="another loop")
