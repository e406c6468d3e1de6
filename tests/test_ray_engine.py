"""``--engine ray`` on a real local Ray cluster: the same rollouts as the hf engine."""
import pytest

from attractor.engines.ray_engine import contiguous_requests
from attractor.store.run_store import RunStore
from helpers import attractor

COMMON = ["--model", "tiny", "--task", "synthetic:prosqa:n=5,seed=8", "--samples", "4",
          "--max-new-tokens", "32", "--seed", "5", "--max-batch-rows", "12"]


@pytest.mark.ray
def test_ray_engine_rollouts_equal_the_hf_engine(tmp_path):
    attractor("sample", *COMMON, "--out", str(tmp_path / "hf"))
    # Ray in its own process, as users run it (the driver is not left inside pytest)
    attractor("sample", *COMMON, "--engine", "ray", "--workers", "2",
              "--out", str(tmp_path / "ray"), subprocess_run=True)
    key = ["question_id", "sample_id"]
    hf = RunStore(tmp_path / "hf").rollouts().sort_values(key).reset_index(drop=True)
    ray = RunStore(tmp_path / "ray").rollouts().sort_values(key).reset_index(drop=True)
    assert len(ray) == len(hf) == 20
    assert (ray["engine"] == "ray").all()
    for col in ("question_id", "sample_id", "seed", "text", "finish_reason", "n_tokens", "answer",
                "correct"):
        assert ray[col].tolist() == hf[col].tolist(), col
    assert [list(x) for x in ray["completion_token_ids"]] == \
        [list(x) for x in hf["completion_token_ids"]]
    # resumable like any run: a rerun has nothing to do, and says so before starting Ray (so it
    # may run in this process)
    again = attractor("sample", *COMMON, "--engine", "ray", "--workers", "2",
                      "--out", str(tmp_path / "ray"))
    assert "nothing to do" in again.stdout


def test_rows_group_into_runs_of_consecutive_samples():
    assert contiguous_requests(["a", "a", "b", "a", "b"], [0, 1, 3, 3, 4]) == \
        [("a", 0, 2), ("a", 3, 1), ("b", 3, 2)]
