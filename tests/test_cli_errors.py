"""Bad input: one line naming what is wrong and where, exit code 2, nothing stored changed."""
import json

import pytest

from helpers import attractor, snapshot


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def bad_files(tmp_path):
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"question": "1+1?", "answer": "2"}\n{"question": oops}\n')
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": "4"}\n')
    return malformed, missing


def _sample(task, out, *extra, model="tiny"):
    return attractor("sample", "--model", model, "--task", task, "--out", str(out), *extra,
                     check=False)


def test_malformed_json_line(bad_files, tmp_path):
    _one_line_error(_sample(str(bad_files[0]), tmp_path / "r"), "malformed.jsonl:2",
                    "malformed JSON")
    assert not (tmp_path / "r").exists()


def test_missing_field(bad_files, tmp_path):
    _one_line_error(_sample(str(bad_files[1]), tmp_path / "r"), "missing.jsonl:2",
                    "missing field 'question'")


def test_unknown_preset(tmp_path):
    _one_line_error(_sample("aime2030", tmp_path / "r"), "--task aime2030", "unknown preset")


def test_model_directory_that_does_not_load(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": "x"}))
    _one_line_error(_sample("synthetic:arith:n=2", tmp_path / "r", model=str(broken)),
                    f"--model {broken}")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    _one_line_error(_sample("synthetic:arith:n=2", tmp_path / "r", model=str(empty)),
                    "no config.json")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option,value,needle", [
    ("--samples", "0", "--samples"), ("--samples", "-3", "--samples"),
    ("--temperature", "-0.1", "--temperature"), ("--top-p", "0", "--top-p"),
    ("--top-p", "1.5", "--top-p"), ("--max-new-tokens", "0", "--max-new-tokens"),
    ("--grader", "fuzzy", "--grader"), ("--dtype", "int3", "--dtype"),
])
def test_invalid_sampling_options(tmp_path, option, value, needle):
    _one_line_error(_sample("synthetic:arith:n=2", tmp_path / "r", option, value), needle)
    assert not (tmp_path / "r").exists()


def test_analyze_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    _one_line_error(attractor("analyze", str(tmp_path / "x"), check=False), "not a run directory")


def test_sample_into_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    before = snapshot(folder)
    _one_line_error(_sample("synthetic:arith:n=2", folder), "not a run directory")
    assert snapshot(folder) == before
