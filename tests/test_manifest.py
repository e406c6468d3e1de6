"""The typed run manifest: one writer, one reader, and runs written before it still load."""
import json
import shutil
from pathlib import Path

import pytest

from attractor.errors import DataError
from attractor.store.manifest import SCHEMA_VERSION, Manifest
from attractor.store.run_store import RunStore
from helpers import attractor

V1_RUN = Path(__file__).parent / "data" / "run_v1"  # written by attractor before the schema


def test_a_manifest_written_before_the_schema_loads_typed_and_round_trips():
    raw = json.loads((V1_RUN / "manifest.json").read_text())
    assert "schema_version" not in raw
    m = Manifest.from_dict(raw)
    assert m.schema_version == 1 and m.model_spec == "tiny"
    assert m.weights_sha256 == raw["model"]["weights_sha256"]
    assert m.sampling == raw["config"]["sampling"] and m.questions_per_shard == 128
    assert m.stage_done("sample") and m.stage("capture") == {}
    assert m.to_dict() == {**raw, "schema_version": 1}
    assert m["identity"] == raw["identity"] and m.get("nope", 3) == 3


def test_an_old_run_resumes_and_analyses_with_todays_code(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(V1_RUN, run)
    same = ["--task", "synthetic:prosqa:n=2,seed=1", "--samples", "2", "--max-new-tokens", "8",
            "--out", str(run)]
    assert "nothing to do" in attractor("sample", *same).stdout
    attractor("analyze", str(run))
    m = RunStore(run).manifest
    assert m.stage_done("analyze") and m.schema_version == 1  # its version is kept
    # a different option is still refused against the old identity
    bad = attractor("sample", *same[:-2], "--temperature", "0.5", "--out", str(run), check=False)
    assert bad.returncode == 2 and "--temperature" in bad.stderr


def test_unknown_keys_are_kept_and_newer_schemas_refused(tmp_path):
    raw = json.loads((V1_RUN / "manifest.json").read_text())
    m = Manifest.from_dict({**raw, "from_the_future": {"x": 1}})
    assert m.extra == {"from_the_future": {"x": 1}} and m.to_dict()["from_the_future"] == {"x": 1}
    with pytest.raises(DataError, match="schema_version 99"):
        Manifest.from_dict({**raw, "schema_version": 99}, "RUN/manifest.json")
    with pytest.raises(DataError, match="missing 'identity'"):
        Manifest.from_dict({k: v for k, v in raw.items() if k != "identity"})


def test_new_runs_write_the_current_schema(tmp_path):
    run = tmp_path / "new"
    attractor("sample", "--task", "synthetic:prosqa:n=2,seed=1", "--samples", "2",
              "--max-new-tokens", "8", "--out", str(run))
    raw = json.loads((run / "manifest.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert Manifest.from_dict(raw).to_dict() == raw


V2_RUN = Path(__file__).parent / "data" / "run_v2"  # written by today's code (file records,
# latents, the flexible reading): later versions must keep reading it


def test_a_run_written_with_file_records_verifies_resumes_and_reports(tmp_path):
    run = tmp_path / "v2"
    shutil.copytree(V2_RUN, run)
    assert "size and sha256 as written" in attractor("verify", str(run)).stdout
    same = ["--task", "synthetic:prosqa:n=2,seed=1", "--samples", "2", "--max-new-tokens", "8",
            "--reading", "flexible", "--out", str(run)]
    assert "nothing to do" in attractor("sample", *same).stdout
    again = attractor("capture", str(run), "--layers", "0,4", "--positions", "last:1").stdout
    assert "captured 0 vectors of 0 rollouts" in again   # everything was captured already
    attractor("report", str(run))   # its metrics are fresh: no re-analysis needed
    attractor("analyze", str(run))
    assert RunStore(run).manifest.config["reading"] == "flexible"
