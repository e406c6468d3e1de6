import json
import subprocess
import sys

from helpers import ENV


def test_demo_runs_offline_on_the_embedded_model(tmp_path):
    """The README's main job, on the shipped tiny model; without the benchmark files it falls
    back to generated ProsQA problems."""
    env = {**ENV, "ATTRACTOR_DATA_DIR": str(tmp_path / "no-data")}
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "attractor", "demo", "--questions", "6",
                           "--samples", "4", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "generated ProsQA" in proc.stdout and "stability gap" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["spec"] == "tiny" and manifest["task"]["kind"] == "prosqa"
    summary = json.loads((out / "metrics" / "summary.json").read_text())
    assert summary["n_questions"] == 6 and summary["n_samples"] == 24
