"""``attractor sweep``: one run per cell of temperature x token budget, and optionally x prompt
template (``--prompt NAME=TEMPLATE``) x steering strength (``--steer V --alpha A,...``); each
cell is a resumable run and finished cells are skipped. ``DIR/sweep.json`` lists the cells;
``attractor report DIR`` plots them."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

from attractor.checks import check_destination
from attractor.config import RunConfig, SamplingConfig
from attractor.errors import ConfigError, DataError, RunMismatchError
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.sample import run_sample
from attractor.store.run_store import RunStore, atomic_write_json

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_list(text: str, kind: type, option: str) -> list:
    """``0,0.5,1.0`` -> [0.0, 0.5, 1.0], with a clear error naming the option."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected a comma-separated list of numbers, got '{text}'") \
            from None
    if not values:
        raise ConfigError(f"{option}: empty list")
    return values


def parse_prompts(specs: list[str]) -> dict[str, str]:
    """``--prompt NAME=TEMPLATE[,NAME=TEMPLATE...]`` (repeatable; a comma starts a new pair
    only before ``NAME=``, so templates may hold commas; a template may be a file's path)."""
    from attractor.tasks.prompts import resolve_template

    out: dict[str, str] = {}
    for spec in specs:
        for part in re.split(r",(?=[A-Za-z0-9_-]+=)", spec):
            name, eq, template = part.partition("=")
            if not eq or not NAME.match(name.strip()):
                raise ConfigError(f"--prompt {part!r}: expected NAME=TEMPLATE (NAME of letters, "
                                  "digits, _ or -)")
            name = name.strip()
            if name in out:
                raise ConfigError(f"--prompt: the name {name!r} is given twice")
            out[name] = resolve_template(template, f"--prompt {name}")
    return out


def cell_name(temperature: float, budget: int, prompt: str | None = None,
              alpha: float | None = None) -> str:
    """Directory name of one cell."""
    name = f"T{temperature:g}_M{budget}"
    if prompt is not None:
        name += f"_P{prompt}"
    if alpha is not None:
        name += f"_A{alpha:g}"
    return name


def run_sweep(base: RunConfig, temperatures: list[float], budgets: list[int], out: str, *,
              prompts: dict[str, str] | None = None, alphas: list[float] | None = None,
              capture_positions: str | None = None, data_dir: str | None = None,
              device: str = "auto", max_batch_rows: int = 256,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Sample and analyse every cell (and capture latents at ``capture_positions`` at every
    layer, for latent tightness); returns the cell list written to ``sweep.json``."""
    check_destination(out)
    if alphas and not base.steer:
        raise ConfigError("--alpha needs --steer VECTOR.safetensors")
    grid = []
    for name, template in (prompts or {None: base.prompt}).items():
        for a in (alphas or [None]):
            for t in temperatures:
                for m in budgets:
                    # validate every cell before running any
                    sampling = SamplingConfig(**{**dataclasses.asdict(base.sampling),
                                                 "temperature": t, "max_new_tokens": m})
                    cfg = dataclasses.replace(base, sampling=sampling, prompt=template,
                                              alpha=base.alpha if a is None else a)
                    grid.append((cfg, name, a, cell_name(t, m, name, a)))
    if capture_positions:
        from attractor.capture.positions import parse_positions

        parse_positions(capture_positions)
    root = Path(out)
    head = {"task": base.task, "model": base.model, "steer": base.steer,
            "samples": base.sampling.samples}
    earlier = _earlier_cells(root, head)
    root.mkdir(parents=True, exist_ok=True)
    cells = []
    for cfg, name, a, cell in grid:
        t, m = cfg.sampling.temperature, cfg.sampling.max_new_tokens
        path = root / cell
        log(f"[bold]cell {cell}[/bold] -> {path}")
        res = run_sample(cfg, str(path), data_dir=data_dir, device=device,
                         max_batch_rows=max_batch_rows, log=log)
        store = RunStore(path)
        captured = store.manifest.stage_done("capture")
        if capture_positions and (res.status == "done" or not captured):
            from attractor.pipeline.capture import run_capture

            run_capture(str(path), layers="all", positions=capture_positions, device=device)
        if res.status == "done" or not RunStore(path).manifest.stage_done("analyze") or (
                capture_positions and not captured):
            run_analyze(str(path))
        cells.append({"temperature": t, "max_new_tokens": m, "path": cell, "prompt": name,
                      "template": cfg.prompt, "alpha": a})
    # a rerun with fewer cells keeps the earlier ones (the report shows every cell the folder has)
    mine = {c["path"] for c in cells}
    kept = [c for c in earlier if c["path"] not in mine and (root / c["path"]).is_dir()]
    atomic_write_json(root / "sweep.json", {"cells": kept + cells, **head})
    return cells


def _earlier_cells(root: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells an earlier sweep into ``root`` recorded; a sweep of another task, model,
    vector or sample count there is refused (its cells would not compare)."""
    path = root / "sweep.json"
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
        cells = list(saved["cells"])
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a sweep record (damaged?); move it away to start "
                        "over") from None
    for key, value in head.items():
        if saved.get(key) != value:
            raise RunMismatchError(f"--out {root}: holds a sweep with {key} {saved.get(key)!r}, "
                                   f"this command has {value!r}; use another --out")
    return cells
