import json

import pandas as pd
import pytest

from attractor.store.run_store import RunStore
from helpers import attractor, snapshot


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_import_one_row_per_sample_then_analyze(tmp_path):
    rows = []
    for qid, gold, answers in [("q1", "\\frac{1}{2}", ["\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{3}"]),
                               ("q2", "7", ["#### 7", "The answer is 8", "no idea"])]:
        for i, a in enumerate(answers):
            rows.append({"qid": qid, "problem": f"question {qid}", "gold": gold, "output": a,
                         "is_correct": i == 0, "stop": "length" if a == "no idea" else "stop"})
    src = tmp_path / "vllm_out.jsonl"
    _write_jsonl(src, rows)
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--response-field", "output", "--id-field",
              "qid", "--question-field", "problem", "--answer-field", "gold", "--correct-field",
              "is_correct", "--finish-reason-field", "stop")
    store = RunStore(run)
    df = store.rollouts()
    assert df["correct"].isna().all() and df["label_correct"].tolist() == [True, False, False] * 2
    assert df.groupby("question_id")["sample_id"].apply(list).tolist() == [[0, 1, 2]] * 2
    attractor("analyze", str(run))
    df = store.rollouts()
    assert df["correct"].tolist() == [True, True, False, True, False, False]
    assert df["label_correct"].tolist() == [True, False, False] * 2  # kept beside, not instead
    q = pd.read_parquet(run / "metrics" / "questions.parquet")
    assert q.loc[q.question_id == "q1", "top1_share"].item() == pytest.approx(2 / 3)
    assert q.loc[q.question_id == "q2", "truncation_rate"].item() == pytest.approx(1 / 3)
    # a second import of the same file does nothing
    before = snapshot(run)
    proc = attractor("import", str(src), "--out", str(run), "--response-field", "output",
                     "--id-field", "qid", "--question-field", "problem", "--answer-field", "gold",
                     "--correct-field", "is_correct", "--finish-reason-field", "stop")
    assert "nothing to do" in proc.stdout and snapshot(run) == before


def test_import_one_row_per_question_with_lists(tmp_path):
    rows = [{"id": 1, "question": "Is Tom a a or b?", "answer": "Tom is a a.",
             "responses": [" ### Tom is a a.", " ### Tom is a b.", " ### Tom is a a."],
             "labels": [True, False, True]}]
    src = tmp_path / "per_question.jsonl"
    _write_jsonl(src, rows)
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--responses-field", "responses",
              "--correct-field", "labels", "--kind", "prosqa")
    attractor("analyze", str(run))
    df = RunStore(run).rollouts()
    assert df["sample_id"].tolist() == [0, 1, 2]
    assert df["correct"].tolist() == [True, False, True]
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert summary["means"]["accuracy"]["mean"] == pytest.approx(2 / 3)


def test_import_errors_name_file_line_and_field(tmp_path):
    src = tmp_path / "bad.jsonl"
    _write_jsonl(src, [{"id": 1, "question": "q", "answer": "1", "responses": ["a", "b"],
                        "labels": [True]}])
    proc = attractor("import", str(src), "--out", str(tmp_path / "r"), "--responses-field",
                     "responses", "--correct-field", "labels", check=False)
    assert proc.returncode == 2 and "bad.jsonl:1" in proc.stderr and "labels" in proc.stderr
    assert not (tmp_path / "r").exists()
    proc = attractor("import", str(src), "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "--response-field" in proc.stderr


def test_analyze_sampled_run_writes_metrics(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task",
              "synthetic:prosqa:n=4,seed=1", "--samples", "4", "--max-new-tokens", "12",
              "--out", str(run))
    proc = attractor("analyze", str(run))
    assert "stability gap" in proc.stdout
    q = pd.read_parquet(run / "metrics" / "questions.parquet")
    for col in ("question_id", "accuracy", "answer_entropy_nats", "answer_entropy_bits",
                "top1_share", "n_unique_answers", "majority_answer", "majority_correct",
                "pass@1", "pass@2", "pass@4", "maj@1", "maj@4", "truncation_rate", "mean_tokens"):
        assert col in q.columns
    assert len(q) == 4
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert {"means", "stability_gap", "auroc_majority_correct"} <= summary.keys()
    assert summary["means"]["accuracy"]["ci_low"] <= summary["means"]["accuracy"]["mean"]
    assert "by_hops" in summary


def test_auto_kind_recognises_prosqa_texts_and_says_what_it_chose(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "q0", "question": "Every lempus is a zumpus. Tom is a "
                                                       "lempus. Is Tom a zumpus or a gorpus?",
                               "answer": "Tom is a zumpus.",
                               "response": "Tom is a lempus. ### Tom is a zumpus."}) + "\n")
    proc = attractor("import", str(src), "--response-field", "response", "--out",
                     str(tmp_path / "r"))
    assert "graded as prosqa (detected from the file" in " ".join(proc.stdout.split())
