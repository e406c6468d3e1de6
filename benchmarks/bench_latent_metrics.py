"""Streaming latent metrics on a store the size of the seed study (DeepScaleR-1.5B).

Builds a synthetic latent store of Q questions x S samples x L layers x P positions x d dims in
float16 (default 30 x 100 x 29 x 8 x 1536, about 1 GB), then times ``latent_table`` (what
``attractor analyze`` runs) against
  - a straightforward per-pair loop (cosine of every sample pair, one group at a time), timed on
    a few groups and scaled to all of them, and
  - the arithmetic bound: the flops of every group's S x S Gram matrix at this machine's
    measured float32 matmul rate,
and reports the peak resident memory of the streaming pass.

Usage: python benchmarks/bench_latent_metrics.py [--questions 30 --samples 100 --layers 29
       --positions 8 --dim 1536 --dir /tmp/latent-bench]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from attractor.metrics.hidden import latent_table
from attractor.store.hidden import HiddenStore


def build_store(root: Path, q: int, s: int, layers: int, positions: int, d: int) -> HiddenStore:
    store = HiddenStore(root)
    g = torch.Generator().manual_seed(0)
    for qi in range(q):
        centre = torch.randn(layers, positions, 1, d, generator=g)
        x = centre + 0.7 * torch.randn(layers, positions, s, d, generator=g)
        rows = {"question_id": [], "sample_id": [], "layer": [], "position": [],
                "occurrence": [], "token_index": []}
        for li in range(layers):
            for pi in range(positions):
                rows["question_id"] += [f"q{qi}"] * s
                rows["sample_id"] += list(range(s))
                rows["layer"] += [li] * s
                rows["position"] += [f"frac:{pi / max(1, positions - 1):g}"] * s
                rows["occurrence"] += [0] * s
                rows["token_index"] += [100 + pi] * s
        store.append(x.reshape(-1, d), rows)
    return store


def pair_loop(x: np.ndarray) -> float:
    """Mean pairwise cosine the obvious way: a Python loop over pairs."""
    total, n = 0.0, 0
    for i in range(len(x)):
        for j in range(len(x)):
            if i != j:
                a, b = x[i], x[j]
                total += float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
                n += 1
    return total / n


def matmul_gflops(d: int = 1536, reps: int = 5) -> float:
    a, b = torch.randn(d, d), torch.randn(d, d)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * d ** 3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=30)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--layers", type=int, default=29)
    ap.add_argument("--positions", type=int, default=8)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--dir", default=None, help="where to build the store (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="latent-bench-"))
    shutil.rmtree(root / "latents", ignore_errors=True)
    t = time.perf_counter()
    build_store(root, args.questions, args.samples, args.layers, args.positions, args.dim)
    build_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in (root / "latents").glob("*.safetensors"))
    rng = np.random.default_rng(0)
    correct = {(f"q{q}", s): bool(rng.random() < 0.5) for q in range(args.questions)
               for s in range(args.samples)}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    table = latent_table(HiddenStore(root), correct)
    ours = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups = args.questions * args.layers * args.positions
    assert len(table) == groups
    x = HiddenStore(root).latents("q0", layer=0, position="frac:0")
    probe = 3
    t = time.perf_counter()
    for _ in range(probe):
        loop_val = pair_loop(x)
    loop_s = (time.perf_counter() - t) / probe * groups
    ref = table[(table.question_id == "q0") & (table.layer == 0) & (table.position == "frac:0")]
    assert abs(ref["tightness"].item() - loop_val) < 1e-3
    gflops = matmul_gflops()
    gram_flops = groups * 2 * args.samples ** 2 * args.dim
    bound = gram_flops / (gflops * 1e9)
    tab = Table(title=f"latent metrics: {args.questions} q x {args.samples} samples x "
                f"{args.layers} layers x {args.positions} positions x d={args.dim} "
                f"(float16, {size / 2**30:.2f} GiB on disk, built in {build_s:.0f} s), "
                f"{torch.get_num_threads()} threads")
    for c in ("method", "seconds", "x vs ours"):
        tab.add_column(c)
    tab.add_row("attractor latent_table (streamed)", f"{ours:.1f}", "1.00")
    tab.add_row(f"per-pair loop (timed on {probe} groups, x{groups})", f"{loop_s:.0f}",
                f"{loop_s / ours:.0f}")
    tab.add_row(f"Gram-matrix flops at {gflops:.0f} GFLOP/s (bound)", f"{bound:.1f}",
                f"{bound / ours:.2f}")
    Console().print(tab)
    Console().print(f"peak resident memory: {rss1:.0f} MiB (before the pass: {rss0:.0f} MiB); "
                    f"store on disk {size / 2**20:.0f} MiB")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
