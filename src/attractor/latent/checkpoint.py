"""Latent-loop checkpoints: ``loop.json`` (method, loop config, base model and its fingerprint)
and ``model.safetensors`` (the fine-tuned base and the stabilisers; float16 when released)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from attractor.errors import UserError
from attractor.latent.slr.config import LoopConfig
from attractor.latent.slr.loop import LatentLoop
from attractor.store.run_store import atomic_write_json

FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "vocab_size", "intermediate_size")


def fingerprint(model) -> dict[str, Any]:
    """What must match between a checkpoint and the base model it is loaded onto."""
    cfg = model.config
    return {k: getattr(cfg, k, None) for k in FINGERPRINT_KEYS}


def save_loop(loop, path: Path, meta: dict[str, Any], half: bool = False,
              key: str = "loop") -> None:
    """Write ``loop`` (a :class:`LatentLoop`, or with ``key="colar"`` a
    :class:`~attractor.latent.colar.model.CoLaR`) to the directory ``path`` (atomically per file)."""
    path.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous()
             for k, v in loop.state_dict().items() if not k.endswith("lm_head.weight")}
    tmp = path / "model.safetensors.tmp"
    save_file(state, tmp)
    tmp.replace(path / "model.safetensors")
    atomic_write_json(path / "loop.json", {**meta, key: loop.cfg.to_dict(),
                                           "base_fingerprint": fingerprint(loop.base)})


def cot_format_of(meta: dict[str, Any]) -> str:
    """The CoT a checkpoint was trained from (``--cot-format``), "-" when not recorded."""
    return str(meta.get("train", {}).get("cot_format", "-"))


def read_meta(path: Path) -> dict[str, Any]:
    """``loop.json`` of a checkpoint (one-line error when it is not one)."""
    f = Path(path) / "loop.json"
    if not f.exists():
        raise UserError(f"{path}: not a latent checkpoint (no loop.json)")
    if not (Path(path) / "model.safetensors").exists():
        raise UserError(f"{path}: latent checkpoint without its weights (no model.safetensors)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{f}: not UTF-8 text (expected the JSON a checkpoint holds)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{f}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("method"), str):
        raise UserError(f"{f}: no 'method' field (not the record `attractor latent train` "
                        "writes, or a damaged one)")
    return meta


def check_base(path: Path, model, meta: dict[str, Any]) -> None:
    """Refuse a checkpoint trained on a base model of another shape (one line naming the
    fields that differ)."""
    got, want = fingerprint(model), meta.get("base_fingerprint", {})
    if got != want:
        diff = ", ".join(f"{k}={want.get(k)} (model has {got.get(k)})" for k in FINGERPRINT_KEYS
                         if got.get(k) != want.get(k))
        raise UserError(f"{path}: checkpoint was trained on another base model: {diff}")


def load_base_weights(path: Path, model) -> dict[str, Any]:
    """Copy a checkpoint's fine-tuned base weights (not its stabilisers) into ``model``: a
    curriculum starts from a ``cot`` checkpoint this way. Returns the checkpoint's meta."""
    meta = read_meta(path)
    check_base(path, model, meta)
    state = {k[len("base."):]: v for k, v in
             load_file(Path(path) / "model.safetensors").items() if k.startswith("base.")}
    load_checked(model, model, state, path)
    return meta


def load_checked(module, model, state: dict, path: Path) -> None:
    """Load float32 copies of ``state`` into ``module`` (the tied LM head may be absent), then
    re-tie ``model``'s embeddings; any other missing or unexpected key is a UserError naming
    ``path``."""
    missing, unexpected = module.load_state_dict({k: v.float() for k, v in state.items()},
                                                 strict=False)
    bad = [k for k in missing if not k.endswith("lm_head.weight")]
    if bad or unexpected:
        raise UserError(f"{path}: weights do not fit ({bad[:2]} missing, "
                        f"{unexpected[:2]} unexpected)")
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()


RELEASED = Path(__file__).parent / "released"


def released_checkpoints(kind: str) -> list[Path]:
    """The checkpoints shipped for a task kind (``released/<kind>/<method>/``)."""
    return sorted(p.parent for p in (RELEASED / kind).glob("*/loop.json"))


def require_loop(path: Path) -> dict[str, Any]:
    """``loop.json`` of ``path``, refusing a baseline (cot, no-cot): those are plain models with
    no thoughts to read, intervene on or search."""
    from attractor.latent.slr.curriculum import BASELINES

    meta = read_meta(path)
    if meta.get("method") in BASELINES:
        raise UserError(f"{path}: a {meta['method']} checkpoint is a plain model with no "
                        "thoughts; this command needs a loop (coconut, slr, slr-minus-...)")
    _refuse_colar(path, meta, "a loop (coconut, slr, slr-minus-...)")
    return meta


def _refuse_colar(path: Path, meta: dict[str, Any], need: str) -> None:
    if meta.get("method") == "colar":
        raise UserError(f"{path}: a colar checkpoint (compressed latents, not a thought loop); "
                        f"this command needs {need}")
    if meta.get("method") in ("hrpo", "grpo"):
        raise UserError(f"{path}: an {meta['method']} checkpoint (a model trained with GRPO, "
                        f"not a thought loop); this command needs {need}")


def load_loop(path: Path, model=None, tok=None, device: str = "cpu") -> tuple[LatentLoop, dict]:
    """Rebuild a checkpoint's loop on its base model (``model``/``tok`` if given, else the base
    it names), refusing a base of another shape."""
    from attractor.models.load import load

    meta = read_meta(path)
    _refuse_colar(path, meta, "a loop checkpoint (load it with load_colar)")
    if model is None:
        model, tok = load(meta["base_model"], dtype="float32", device=device)
    check_base(path, model, meta)
    loop = LatentLoop(model, tok, LoopConfig.from_dict(meta["loop"]))
    load_checked(loop, model, load_file(Path(path) / "model.safetensors"), path)
    return loop.to(device).eval(), meta


def _load_wrapped(path: Path, methods: tuple[str, ...], build, model, tok, device: str):
    """Rebuild a checkpoint whose module wraps its base (``build(model, tok, meta)``) on the
    base (``model``/``tok`` if given, else the base it names), refusing another method's
    checkpoint or a base of another shape."""
    from attractor.models.load import load

    meta = read_meta(path)
    if meta.get("method") not in methods:
        raise UserError(f"{path}: a {meta.get('method')} checkpoint; this needs a "
                        f"{' or '.join(methods)} one (attractor latent train --method "
                        f"{methods[0]})")
    if model is None:
        model, tok = load(meta["base_model"], dtype="float32", device=device)
    check_base(path, model, meta)
    module = build(model, tok, meta)
    load_checked(module, model, load_file(Path(path) / "model.safetensors"), path)
    return module.to(device).eval(), meta


def load_colar(path: Path, model=None, tok=None, device: str = "cpu"):
    """Rebuild a ``--method colar`` checkpoint (its fine-tuned base and latent head) on its base
    model (``model``/``tok`` if given, else the base it names), refusing a checkpoint of another
    method or a base of another shape."""
    from attractor.latent.colar.model import CoLaR, ColarConfig

    return _load_wrapped(path, ("colar",), lambda m, t, meta: CoLaR(
        m, t, ColarConfig.from_dict(meta["colar"])), model, tok, device)


def load_hybrid(path: Path, model=None, tok=None, device: str = "cpu"):
    """Rebuild a ``--method hrpo`` or ``grpo`` checkpoint (its fine-tuned base and HRPO gate) on
    its base model, refusing a checkpoint of another method or a base of another shape."""
    from attractor.latent.hrpo.model import HybridConfig, HybridModel

    return _load_wrapped(path, ("hrpo", "grpo"), lambda m, t, meta: HybridModel(
        m, t, HybridConfig.from_dict(meta["hybrid"])), model, tok, device)
