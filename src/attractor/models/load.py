"""``load(spec)``: a model and its tokenizer from ``tiny``, a local directory or a hub id."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from attractor.config import DTYPES
from attractor.errors import ConfigError, ModelLoadError

TINY_DIR = Path(__file__).resolve().parent / "tiny"


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    from attractor.checks import check_device

    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available")
    return device


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for ``--dtype`` (``auto``: bfloat16 on a GPU that has it, else float32)."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype: expected one of {', '.join(DTYPES)}, got '{dtype}'")
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def model_path(spec: str) -> Path | None:
    """The local directory of a spec (``tiny`` -> the embedded model; ``smollm2`` or a
    ``.gguf`` file -> its converted safetensors directory, made on first use:
    :mod:`attractor.models.gguf`), None for a hub id."""
    from attractor.models.gguf import converted_dir, is_gguf_spec

    if spec == "tiny":
        return TINY_DIR
    if is_gguf_spec(spec):
        return converted_dir(spec)
    p = Path(spec).expanduser()
    # a hub id is NAME or OWNER/NAME; more parts, a leading ./ / ~, or an OWNER folder that
    # exists here make it a local path (offline, a hub lookup of a typo retries for a minute)
    if p.exists() or spec.startswith((".", "/", "~")) or len(p.parts) > 2 or (
            len(p.parts) == 2 and p.parent.is_dir()):
        return p
    return None


def load(spec: str = "tiny", dtype: str = "auto", device: str = "auto",
         trust_remote_code: bool = False, attn_implementation: str | None = None
         ) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a spec, in eval mode on ``device``
    (``attn_implementation="eager"`` for attention weights: SDPA and flash return none).

    Raises :class:`ModelLoadError` (one line naming the spec) when it does not load.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path = model_path(spec)
    if path is not None and not (path / "config.json").exists():
        if spec == "tiny":
            raise ModelLoadError(f"--model tiny: the embedded model is missing at {path}; "
                                 "reinstall attractor or run 'attractor train-tiny'")
        if not path.exists():
            raise ModelLoadError(f"--model {spec}: no such directory (a local path; a hub id is "
                                 "NAME or OWNER/NAME)")
        raise ModelLoadError(f"--model {spec}: {path} has no config.json (not a model directory)")
    source = str(path) if path is not None else spec
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype,
                                                     trust_remote_code=trust_remote_code, **extra)
    except (MemoryError, torch.OutOfMemoryError) as err:
        raise ModelLoadError(f"--model {spec}: out of memory while loading it on {dev} "
                             f"({torch_dtype}); try --dtype bfloat16 or another --device") from err
    except Exception as err:   # transformers and the hub raise many types for a bad model
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"--model {spec}: does not load as a causal LM "
                             f"({type(err).__name__}: {first}; --debug shows the cause)") from err
    model.to(dev)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def weights_sha256(spec: str) -> str | None:
    """sha256 over the weight files of a local model (sorted by name); None for a hub id."""
    path = model_path(spec)
    if path is None:
        return None
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest() if files else None


def describe(spec: str, model, tokenizer) -> dict[str, Any]:
    """The manifest's model and tokenizer record."""
    from attractor.models.gguf import gguf_record

    path = model_path(spec)
    gguf = gguf_record(path) if path is not None else None
    return {
        "spec": spec,
        "path": str(path) if path is not None else None,
        **({"gguf": {k: gguf[k] for k in ("gguf_path", "gguf_sha256", "converted_by", "note")
                     if k in gguf}} if gguf else {}),
        "weights_sha256": weights_sha256(spec),
        "architecture": type(model).__name__,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(next(model.parameters()).device),
        "n_params": sum(p.numel() for p in model.parameters()),
        "num_hidden_layers": getattr(model.config, "num_hidden_layers", None),
        "hidden_size": getattr(model.config, "hidden_size", None),
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                      "eos_token_id": tokenizer.eos_token_id,
                      "has_chat_template": bool(getattr(tokenizer, "chat_template", None))},
    }
