"""``sample --budget`` with uniform and adaptive allocation (real tiny model, real runs)."""
import pytest

from attractor.errors import ConfigError
from attractor.scaling.allocate import QuestionState, check_allocation, next_batch
from attractor.store.run_store import RunStore
from helpers import attractor, drop_shard

COMMON = ["--model", "tiny", "--task", "synthetic:prosqa:n=6,seed=4", "--samples", "8",
          "--max-new-tokens", "40", "--seed", "2", "--first-round", "2", "--budget", "700",
          "--max-batch-rows", "16"]


def _counts(run):
    df = RunStore(run).rollouts()
    return df, df.groupby("question_id", sort=False).size()


def test_uniform_and_adaptive_spend_the_same_budget_differently(tmp_path):
    attractor("sample", *COMMON, "--allocate", "uniform", "--out", str(tmp_path / "u"))
    attractor("sample", *COMMON, "--allocate", "adaptive", "--out", str(tmp_path / "a"))
    du, cu = _counts(tmp_path / "u")
    da, ca = _counts(tmp_path / "a")
    order = [p.id for p in RunStore(tmp_path / "a").questions()]
    for df, counts in ((du, cu), (da, ca)):
        assert (counts >= 2).all() and (counts <= 8).all()
        # one question spreads over several shards; rollouts() still reads in question order,
        # then sample id
        rank = df["question_id"].map(order.index)
        assert list(zip(rank, df["sample_id"])) == sorted(zip(rank, df["sample_id"]))
        assert list(dict.fromkeys(df["question_id"])) == order
        per = df["n_tokens"].sum() / len(df)
        assert df["n_tokens"].sum() <= 700 + 16 * 40  # the last batch may overshoot its estimate
        done = df.groupby("question_id")["answer_class"].agg(
            lambda s: len(s) == 8 or (s.notna().all() and s.nunique() == 1))
        # stopped because the budget is spent, or because nothing is left to give samples to
        assert df["n_tokens"].sum() >= 700 - 2 * per or done.all()
        assert not df.duplicated(["question_id", "sample_id"]).any()
        assert (df["seed"] == 2 + df["sample_id"]).all()
        for _, sub in df.groupby("question_id"):  # sample ids are 0..n-1, no gaps
            assert sorted(sub["sample_id"]) == list(range(len(sub)))
    assert cu.max() - cu.min() <= 1  # uniform: an even spread
    # adaptive: a question whose first round agreed got nothing more
    first = da[da["sample_id"] < 2].groupby("question_id")["answer_class"].agg(
        lambda s: s.notna().all() and s.nunique() == 1)
    for qid, agreed in first.items():
        if agreed:
            assert ca[qid] == 2
    # the same sample ids hold the same rollouts in both runs (seed + i)
    common = du.merge(da, on=["question_id", "sample_id"])
    assert len(common) > 0 and (common["text_x"] == common["text_y"]).all()


def test_budgeted_run_resumes_after_losing_its_last_shard(tmp_path):
    run = tmp_path / "a"
    attractor("sample", *COMMON, "--allocate", "adaptive", "--out", str(run))
    before = RunStore(run).rollouts().sort_values(["question_id", "sample_id"])
    store = RunStore(run)
    shards = store.rollout_shards()
    assert len(shards) >= 2
    drop_shard(shards[-1])  # as if killed before the last batch was written
    store.update_stage("sample", status="running")
    attractor("sample", *COMMON, "--allocate", "adaptive", "--out", str(run))
    after = RunStore(run).rollouts().sort_values(["question_id", "sample_id"])
    assert after[["question_id", "sample_id", "text"]].values.tolist() == \
        before[["question_id", "sample_id", "text"]].values.tolist()
    again = attractor("sample", *COMMON, "--allocate", "adaptive", "--out", str(run))
    assert "nothing to do" in again.stdout


def test_planner_rules():
    settled = QuestionState(["a", "a"], 20)
    split = QuestionState(["a", "b"], 20)
    blank = QuestionState([None, "a"], 20)
    plan = next_batch([settled, split, blank], "adaptive", 10_000, 2, 8, 16)
    assert [q for q, _, _ in plan] == [1, 2] or [q for q, _, _ in plan] == [2, 1]
    assert all(first == 2 and count == 1 for _, first, count in plan)
    assert next_batch([settled, split], "adaptive", 40, 2, 8, 16) == []  # budget spent
    assert [q for q, _, _ in next_batch([settled, split], "uniform", 10_000, 2, 8, 16)] == [0, 1]
    assert next_batch([QuestionState([], 0)] * 3, "uniform", 10, 2, 8, 4) == [(0, 0, 2), (1, 0, 2)]


@pytest.mark.parametrize("args", [("adaptive", None, 2, 8), ("greedy", 100, 2, 8),
                                  ("uniform", 0, 2, 8), ("adaptive", 100, 9, 8)])
def test_bad_allocation_options(args):
    with pytest.raises(ConfigError):
        check_allocation(*args)
