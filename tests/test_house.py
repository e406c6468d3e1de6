"""House rules that a change can break silently: the numpy-only metric tests run where torch
cannot be imported (conftest imports it nowhere at module level)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMPY_ONLY = ["tests/test_metrics.py"]


def test_numpy_only_tests_pass_without_torch():
    code = ("import sys; sys.modules['torch'] = None  # any 'import torch' now fails\n"
            "import pytest\n"
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *{NUMPY_ONLY!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
