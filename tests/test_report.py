"""The report opens offline in a real headless browser with every figure in place."""
import os
import re
import shutil
import subprocess

import pytest

from helpers import attractor

FIGURES = ["entropy_vs_top1", "pass_maj", "auroc", "vote", "early_stop", "tsne_text",
           "tightness_heatmaps", "tightness_by_layer", "pca_question", "pca_stable",
           "tsne_latents"]
SECTIONS = ["provenance", "headline", "stability-gap", "scaling", "signals", "votes",
            "early-stop", "latents", "questions"]


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory):
    """The embedded model (it answers, so every section has data) on 8 generated questions."""
    run = tmp_path_factory.mktemp("rep") / "run"
    attractor("sample", "--model", "tiny", "--task", "synthetic:prosqa:n=8,seed=3",
              "--samples", "4", "--max-new-tokens", "40", "--out", str(run))
    attractor("capture", str(run), "--layers", "all", "--positions", "frac:0.5,chunk:8")
    attractor("analyze", str(run), "--window", "4")
    attractor("vote", str(run), "--draws", "20")
    attractor("early-stop", str(run), "--window", "4")
    attractor("report", str(run))
    return run


def test_report_files(reported_run):
    html = (reported_run / "report" / "index.html").read_text()
    for name in FIGURES:
        assert (reported_run / "report" / f"{name}.png").stat().st_size > 1000
        assert f"id='fig-{name}'" in html
    assert "<table" in html and "data:image/png;base64," in html
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" in html, sid
    assert "weights sha256" in html and "--samples 4" in html  # provenance: hash and command
    assert not re.search(r"(src|href)=['\"]https?://|url\(|@import", html)  # fetches nothing


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("ATTRACTOR_REQUIRE_BROWSER"):
        pytest.fail("no Chromium on this machine (ATTRACTOR_REQUIRE_BROWSER is set)")
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


def _probe(run, tmp_path, width: int, script: str) -> str:
    """Load the report in an iframe of ``width`` px in headless Chromium, run ``script`` (with
    ``d``, the report's document) once it loaded, and return the DOM it dumps: the script
    writes its findings into ``out``."""
    page = (run / "report" / "index.html").as_uri()
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(f"""<!doctype html><html><body><iframe id=f src="{page}"
        style="width:{width}px;height:800px"></iframe><pre id=out>pending</pre><script>
        document.getElementById('f').onload = () => {{
          const d = document.getElementById('f').contentDocument;
          const out = document.getElementById('out');
          {script}
        }};</script></body></html>""")
    proc = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--allow-file-access-from-files", "--virtual-time-budget=5000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                          timeout=120)
    return proc.stdout + proc.stderr[-2000:]


def test_report_renders_every_figure_in_headless_chromium(reported_run, tmp_path):
    # the browser reports, into the DOM it dumps, how many images decoded to real pixels
    got = _probe(reported_run, tmp_path, 1200, """
          const imgs = [...d.querySelectorAll('figure img')];
          const ok = imgs.filter(i => i.complete && i.naturalWidth > 100).length;
          out.textContent = 'figures=' + d.querySelectorAll('figure').length + ' decoded=' +
            ok + ' ids=' + [...d.querySelectorAll('figure')].map(f => f.id).join(',');""")
    m = re.search(r"figures=(\d+) decoded=(\d+) ids=([\w,-]*)", got)
    assert m, got[-3000:]
    assert int(m.group(1)) == int(m.group(2)) >= len(FIGURES)
    assert {f"fig-{n}" for n in FIGURES} <= set(m.group(3).split(","))


def test_report_table_sorts_and_searches_and_fits_two_widths(reported_run, tmp_path):
    got = _probe(reported_run, tmp_path, 800, """
          const t = d.getElementById('qtable');
          const first = () => t.tBodies[0].rows[0].cells[0].textContent;
          t.tHead.rows[0].cells[0].click(); const asc = first();
          t.tHead.rows[0].cells[0].click(); const desc = first();
          const s = d.getElementById('qsearch'); s.value = 'no such text anywhere';
          s.dispatchEvent(new Event('input'));
          const shown = [...t.tBodies[0].rows].filter(r => r.style.display !== 'none').length;
          const fits = d.documentElement.scrollWidth <= 800;
          out.textContent = 'asc=' + asc + ' desc=' + desc + ' shown=' + shown + ' fits=' + fits;""")
    page = (reported_run / "report" / "index.html").as_uri()
    browser = _browser()
    m = re.search(r"asc=(\S+) desc=(\S+) shown=(\d+) fits=(\w+)", got)
    assert m, got[-3000:]
    assert m.group(1) != m.group(2) and m.group(3) == "0", got[-500:]
    assert m.group(4) == "true", "the page scrolls sideways at 800 px"
    for width in (1400, 800):
        shot = tmp_path / f"report-{width}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--window-size={width},2000",
                        f"--screenshot={shot}", page], capture_output=True, timeout=120)
        assert shot.stat().st_size > 20_000


def test_report_needs_metrics(random_model_dir, tmp_path):
    run = tmp_path / "run"
    attractor("sample", "--model", str(random_model_dir), "--task", "synthetic:arith:n=2",
              "--samples", "2", "--max-new-tokens", "8", "--out", str(run))
    proc = attractor("report", str(run), check=False)
    assert proc.returncode == 2 and "attractor analyze" in proc.stderr
