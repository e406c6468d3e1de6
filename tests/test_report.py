"""The report opens offline in a real headless browser with every figure in place."""
import re
import shutil
import subprocess

import pytest

from helpers import attractor

FIGURES = ["entropy_vs_top1", "tsne_text", "tightness_heatmaps", "tightness_by_layer",
           "pca_question", "tsne_latents"]


@pytest.fixture(scope="module")
def reported_run(random_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("rep") / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:prosqa:n=5,seed=3",
              "--samples", "4", "--max-new-tokens", "30", "--out", str(run))
    attractor("capture", str(run), "--layers", "all", "--positions", "frac:0.5,chunk:8")
    attractor("analyze", str(run))
    attractor("report", str(run))
    return run


def test_report_files(reported_run):
    html = (reported_run / "report" / "index.html").read_text()
    for name in FIGURES:
        assert (reported_run / "report" / f"{name}.png").stat().st_size > 1000
        assert f"id='fig-{name}'" in html
    assert "<table" in html and "data:image/png;base64," in html
    assert not re.search(r"(src|href)=['\"]https?://", html)  # self-contained


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


def test_report_renders_every_figure_in_headless_chromium(reported_run, tmp_path):
    browser = _browser()
    page = (reported_run / "report" / "index.html").as_uri()
    # the browser reports, into the DOM it dumps, how many images decoded to real pixels
    probe = tmp_path / "probe.html"
    probe.write_text(f"""<!doctype html><html><body><iframe id=f src="{page}"
        style="width:1200px;height:800px"></iframe><pre id=out>pending</pre><script>
        document.getElementById('f').onload = () => {{
          const d = document.getElementById('f').contentDocument;
          const imgs = [...d.querySelectorAll('figure img')];
          const ok = imgs.filter(i => i.complete && i.naturalWidth > 100).length;
          document.getElementById('out').textContent =
            'figures=' + d.querySelectorAll('figure').length + ' decoded=' + ok +
            ' ids=' + [...d.querySelectorAll('figure')].map(f => f.id).join(',');
        }};</script></body></html>""")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--allow-file-access-from-files", "--virtual-time-budget=5000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                          timeout=120)
    m = re.search(r"figures=(\d+) decoded=(\d+) ids=([\w,-]*)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert int(m.group(1)) == int(m.group(2)) >= len(FIGURES)
    assert {f"fig-{n}" for n in FIGURES} <= set(m.group(3).split(","))


def test_report_needs_metrics(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:arith:n=2",
              "--samples", "2", "--max-new-tokens", "8", "--out", str(run))
    proc = attractor("report", str(run), check=False)
    assert proc.returncode == 2 and "attractor analyze" in proc.stderr
