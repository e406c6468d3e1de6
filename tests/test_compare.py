"""attractor compare: runs on the same questions side by side; other questions refused."""
import json

import pandas as pd

from helpers import attractor, snapshot


def test_compare_two_runs_and_refuse_other_questions(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--task", "synthetic:prosqa:n=6,seed=2", "--samples", "3"]
    attractor("sample", *common, "--out", str(a))
    attractor("sample", *common, "--temperature", "0.5", "--out", str(b))
    attractor("capture", str(a), "--positions", "frac:0.5", "--layers", "0,2,4")
    for r in (a, b):
        attractor("analyze", str(r))
    out = tmp_path / "cmp"
    proc = attractor("compare", str(a), str(b), "--out", str(out))
    assert "tightness" in proc.stdout and "compare.png" in proc.stdout
    df = pd.read_parquet(out / "compare.parquet")
    assert df["run"].tolist() == ["a", "b"]
    for r, row in zip((a, b), df.to_dict("records")):
        s = json.loads((r / "metrics" / "summary.json").read_text())
        assert row["accuracy"] == s["means"]["accuracy"]["mean"]
        assert row["maj@3"] == s["means"]["maj@3"]["mean"]
        assert row["stability_gap_auroc"] == s["auroc_majority_correct"]["top1_share"]
    td = pd.read_parquet(out / "tightness.parquet")
    assert set(td["run"]) == {"a"} and td["relative_depth"].tolist() == [0.0, 0.5, 1.0]
    lat = pd.read_parquet(a / "metrics" / "latent.parquet")
    want = lat[(lat.layer == 2) & (lat.occurrence == 0)]["tightness"].mean()
    assert td[td.layer == 2]["tightness"].iloc[0] == want
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    attractor("sample", "--task", "synthetic:prosqa:n=6,seed=9", "--samples", "2",
              "--out", str(c))
    attractor("analyze", str(c))
    before = snapshot(out)
    proc = attractor("compare", str(a), str(c), "--out", str(out), check=False)
    assert proc.returncode == 2 and "questions differ" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and snapshot(out) == before
    proc = attractor("compare", str(a), "--out", str(out), check=False)
    assert proc.returncode == 2 and "at least two runs" in proc.stderr
