"""The resumable state of a training run (``<out>/train-state/``): the trained weights, the
optimiser's moments and the position in the data, as safetensors plus JSON, replaced
atomically, so a killed run resumes exactly where its last save left it. Shared by the latent
trainers (:mod:`attractor.latent.slr.train`, :mod:`attractor.latent.colar.train`,
:mod:`attractor.latent.hrpo.train`) and ``train consistency`` (:mod:`attractor.consistency.run`)."""
from __future__ import annotations

import contextlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from attractor.store.atomic import settled, swap_in

# Options that change where or how fast a run goes, not what it trains: a resumed run may differ.
LOGISTICS = ("out", "threads", "device", "ckpt_every")


def what_it_trains(config: dict[str, Any]) -> dict[str, Any]:
    """The options of ``config`` that decide what a run trains (a resume must match them)."""
    return {k: v for k, v in config.items() if k not in LOGISTICS}


def epoch_order(n: int, seed: int, stage: int, epoch: int) -> list[int]:
    """The seeded order of ``n`` training questions in one epoch of one stage."""
    idx = list(range(n))
    random.Random(f"latent:{seed}:{stage}:{epoch}").shuffle(idx)
    return idx


def save_state(module: torch.nn.Module, opt: torch.optim.Optimizer | None, state_dir: Path, cfg,
               pos: dict, drop_lm_head: bool = True) -> None:
    """Write ``module``'s weights (without ``lm_head.weight`` when ``drop_lm_head``: a tied
    head), ``opt``'s state (none for ``opt=None``) and ``pos`` to ``state_dir``, replacing the
    previous save only once the new one is complete."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()
               if not (drop_lm_head and k.endswith("lm_head.weight"))}, tmp / "model.safetensors")
    names = {id(p): n for n, p in module.named_parameters()}
    tensors = {f"{names[id(p)]}::{k}": v.detach().contiguous()
               for g in (opt.param_groups if opt is not None else []) for p in g["params"]
               for k, v in opt.state.get(p, {}).items() if torch.is_tensor(v)}
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({"config": asdict(cfg), "pos": pos}))
    swap_in(tmp, state_dir)


def load_optimizer(opt: torch.optim.Optimizer, module: torch.nn.Module, state_dir: Path,
                   device: str) -> None:
    """Restore the optimiser moments :func:`save_state` wrote."""
    params = dict(module.named_parameters())
    for key, val in load_file(state_dir / "optimizer.safetensors", device=device).items():
        name, slot = key.split("::")
        opt.state[params[name]][slot] = val


def resume(module: torch.nn.Module, model, cfg, state_dir: Path, device: str) -> dict | None:
    """The saved position of the run in ``state_dir`` with its weights loaded into ``module``
    (``model``: its base, re-tied), or None when there is no saved state; refuses a state saved
    by a run of other options (options added since the run began count at their defaults)."""
    from attractor.errors import UserError
    from attractor.latent.checkpoint import load_checked
    from attractor.latent.slr.train_config import LatentTrainConfig

    if not (settled(state_dir) / "state.json").exists():
        return None
    saved = json.loads((state_dir / "state.json").read_text())
    if what_it_trains({**asdict(LatentTrainConfig()), **saved["config"]}) != \
            what_it_trains(asdict(cfg)):
        raise UserError(f"{state_dir.parent}: holds a run of another configuration; use another "
                        "--out")
    load_checked(module, model, load_file(state_dir / "model.safetensors", device=device),
                 state_dir)
    return saved["pos"]


@dataclass
class TrainingBase:
    """The base model a latent run trains, where, and what it started from."""

    model: Any
    tok: Any
    device: str
    autocast: Any           # bfloat16 autocast on a GPU, a no-op context on the CPU
    base_sha: str           # the base weights' sha256 (before --init)
    init_meta: dict | None  # the --init checkpoint's meta


def load_training_base(cfg) -> TrainingBase:
    """Load ``cfg.model`` in float32 on ``cfg.device``, then ``cfg.init``'s fine-tuned base
    weights when given (refusing a checkpoint of another base)."""
    from attractor.latent.checkpoint import load_base_weights
    from attractor.models.load import describe, load, resolve_device

    dev = resolve_device(cfg.device)
    model, tok = load(cfg.model, dtype="float32", device=dev)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda")
                else contextlib.nullcontext())
    sha = describe(cfg.model, model, tok)["weights_sha256"]
    init_meta = load_base_weights(Path(cfg.init), model) if cfg.init else None
    return TrainingBase(model, tok, dev, autocast, sha, init_meta)
