import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attractor.errors import ConfigError, DataError
from attractor.tasks.loaders import PRESETS, load_task
from conftest import DATA_DIR, require_data

EXPECTED_ROWS = {"aime25": 30, "aime24": 30, "math500": 500, "gsm8k": 1319, "prosqa": 300,
                 "prontoqa": 800}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_loads_with_gold_and_kind(preset):
    require_data(PRESETS[preset]["file"])
    problems, src = load_task(preset, data_dir=DATA_DIR)
    assert len(problems) == EXPECTED_ROWS[preset] == src.n_problems
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.question and p.gold for p in problems)
    assert len(src.sha256) == 64
    if preset in ("prosqa", "prontoqa"):
        assert problems[0].kind == preset and problems[0].steps


def test_data_dir_from_environment(monkeypatch, tmp_path):
    (tmp_path / "aime25.jsonl").write_text(json.dumps({"id": 1, "problem": "1+1?",
                                                       "answer": "2"}) + "\n")
    monkeypatch.setenv("ATTRACTOR_DATA_DIR", str(tmp_path))
    problems, src = load_task("aime25")
    assert [p.gold for p in problems] == ["2"] and src.path == str(tmp_path / "aime25.jsonl")


def test_generic_files_with_field_mapping(tmp_path):
    rows = [{"qid": f"q{i}", "text": f"What is {i}+1?", "sol": str(i + 1), "cot": ["a", "b"]}
            for i in range(3)]
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    js = tmp_path / "t.json"
    js.write_text(json.dumps(rows))
    pqf = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pqf)
    for path in (jl, js, pqf):
        problems, _ = load_task(str(path), id_field="qid", question_field="text",
                                answer_field="sol", steps_field="cot", limit=2)
        assert [p.id for p in problems] == ["q0", "q1"]
        assert problems[1].gold == "2" and problems[1].steps == ["a", "b"]
        assert problems[0].kind == "math"


def test_prosqa_and_prontoqa_files_are_recognised_by_path(tmp_path):
    src = require_data("prosqa_valid.json")
    copy = tmp_path / "my_prosqa.json"
    copy.write_text(src.read_text())
    problems, info = load_task(str(copy))
    assert info.kind == "prosqa" and problems[0].kind == "prosqa"
    lines = require_data("prontoqa_test.jsonl").read_text().splitlines()[:5]
    p2 = tmp_path / "pq.jsonl"
    p2.write_text("\n".join(lines) + "\n")
    problems, info = load_task(str(p2))
    assert info.kind == "prontoqa" and problems[0].gold in ("True", "False")


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        load_task(str(path))


def test_missing_field_names_field_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: missing field 'answer'"):
        load_task(str(path))


def test_unknown_preset_and_bad_synthetic_spec():
    with pytest.raises(ConfigError, match="unknown preset"):
        load_task("aime26")
    with pytest.raises(ConfigError, match="unknown generator"):
        load_task("synthetic:sudoku")
    with pytest.raises(ConfigError, match="key=value"):
        load_task("synthetic:prosqa:n")


def test_synthetic_specs_with_options():
    problems, src = load_task("synthetic:prosqa:n=6,hops=4-5,seed=2")
    assert len(problems) == 6 and all(4 <= p.meta["hops"] <= 5 for p in problems)
    assert src.fields["hops"] == [4, 5]
    again, _ = load_task("synthetic:prosqa:n=6,hops=4-5,seed=2")
    assert [p.question for p in again] == [p.question for p in problems]
    ar, _ = load_task("synthetic:arith:n=3,hops=2")
    assert all(len(p.steps) == 2 for p in ar)
    pr, _ = load_task("synthetic:prontoqa:n=3")
    assert all(p.gold in ("True", "False") for p in pr)
