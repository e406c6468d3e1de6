import json

import pandas as pd

from attractor.report.sweep import overthinking
from helpers import attractor, snapshot


def test_overthinking_lists_questions_that_lose_accuracy_with_budget():
    df = pd.DataFrame({"temperature": [1.0] * 4, "question_id": ["a", "a", "b", "b"],
                       "max_new_tokens": [64, 256, 64, 256], "accuracy": [0.9, 0.5, 0.2, 0.6]})
    over = overthinking(df)
    assert over["question_id"].tolist() == ["a"]
    assert over.iloc[0]["best_budget"] == 64 and over.iloc[0]["accuracy_at_largest"] == 0.5


def test_sweep_runs_every_cell_resumes_and_reports(random_model_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=3,seed=2",
            "--temperature", "0,1.0", "--max-new-tokens", "6,16", "--samples", "2",
            "--out", str(out)]
    attractor(*args)
    spec = json.loads((out / "sweep.json").read_text())
    assert [(c["temperature"], c["max_new_tokens"]) for c in spec["cells"]] == \
        [(0.0, 6), (0.0, 16), (1.0, 6), (1.0, 16)]
    for c in spec["cells"]:
        assert (out / c["path"] / "metrics" / "questions.parquet").exists()
    before = snapshot(out)
    proc = attractor(*args)
    assert proc.stdout.count("nothing to do") == 4 and snapshot(out) == before
    attractor("report", str(out))
    page = (out / "report" / "index.html").read_text()
    for fig in ("depth", "width", "temperature"):
        assert f"id='fig-{fig}'" in page and (out / "report" / f"{fig}.png").exists()
    assert "id='overthinking'" in page
    # a rerun with fewer cells keeps the earlier ones in sweep.json (the report shrank before)
    fewer = args[:args.index("--temperature")] + ["--temperature", "1.0"] + \
        args[args.index("--temperature") + 2:]
    attractor(*fewer)
    again = json.loads((out / "sweep.json").read_text())
    assert sorted(c["path"] for c in again["cells"]) == sorted(c["path"] for c in spec["cells"])
    other = attractor(*[a if a != "2" else "3" for a in fewer], check=False)   # --samples 3
    assert other.returncode == 2 and "holds a sweep with samples 2" in other.stderr
    bad = attractor("sweep", "--task", "synthetic:arith:n=1", "--temperature", "0,x",
                    "--out", str(tmp_path / "bad"), check=False)
    assert bad.returncode == 2 and "--temperature" in bad.stderr
    bad = attractor("sweep", "--task", "synthetic:arith:n=1", "--temperature", "0,-1",
                    "--out", str(tmp_path / "bad"), check=False)
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()
