"""``attractor sweep``: one run per (temperature, token budget) cell, each resumable; finished
cells are skipped. ``DIR/sweep.json`` lists the cells; ``attractor report DIR`` plots them."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from attractor.config import RunConfig, SamplingConfig
from attractor.errors import ConfigError
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.sample import run_sample
from attractor.store.run_store import RunStore, atomic_write_json


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


def cell_name(temperature: float, budget: int) -> str:
    """Directory name of one cell."""
    return f"T{temperature:g}_M{budget}"


def run_sweep(base: RunConfig, temperatures: list[float], budgets: list[int], out: str, *,
              data_dir: str | None = None, device: str = "auto", max_batch_rows: int = 256,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Sample and analyse every cell; returns the cell list written to ``sweep.json``."""
    cells = []
    for t in temperatures:
        for m in budgets:
            # validate every cell before running any
            SamplingConfig(**{**dataclasses.asdict(base.sampling), "temperature": t,
                              "max_new_tokens": m})
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for t in temperatures:
        for m in budgets:
            cfg = dataclasses.replace(base, sampling=SamplingConfig(
                **{**dataclasses.asdict(base.sampling), "temperature": t, "max_new_tokens": m}))
            path = root / cell_name(t, m)
            log(f"[bold]cell T={t:g}, max_new_tokens={m}[/bold] -> {path}")
            res = run_sample(cfg, str(path), data_dir=data_dir, device=device,
                             max_batch_rows=max_batch_rows, log=log)
            store = RunStore(path)
            analysed = store.manifest.stage_done("analyze")
            if res["status"] == "done" or not analysed:
                run_analyze(str(path))
            cells.append({"temperature": t, "max_new_tokens": m, "path": cell_name(t, m)})
    atomic_write_json(root / "sweep.json", {"cells": cells, "task": base.task,
                                            "model": base.model,
                                            "samples": base.sampling.samples})
    return cells
