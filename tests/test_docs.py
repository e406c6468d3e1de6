"""The documentation site: the CLI reference matches the commands, and the MkDocs build passes
in strict mode (a broken link or anchor fails it)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_generated_from_the_commands_and_not_stale():
    from attractor.cli.reference import render

    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == render(), ("docs/cli.md is stale: python -m attractor.cli.reference > "
                              "docs/cli.md")
    for command in ("attractor sample", "attractor latent train", "attractor verify",
                    "attractor train consistency"):
        assert f"## `{command}`" in page
    assert "| `--max-new-tokens` | `256` |" in page   # a config field, with its default


def test_the_docs_site_builds_with_no_broken_link(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "findings" / "index.html").exists()


def test_every_page_the_readme_links_exists():
    import re

    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs/)[^)#]*)\)", readme):
        assert (ROOT / target).exists(), target
