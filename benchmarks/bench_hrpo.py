"""HRPO's hybrid sampling against plain sampling (the hf engine) on the same prompts and seeds.

Rows, same model, one prompt repeated ``--samples`` times, ``--new-tokens`` budget, T = 0.5:
the hf engine (``attractor sample``'s sampler, the baseline), the hybrid sampler with its gates
closed (a = 1: the same tokens as the baseline, bit for bit, on the hybrid code path) and with
them open (HRPO: h~ = p^T W_e / ||p|| and the gate on every fed token until the marker). The
open row's tokens differ, so the table compares seconds per generated token. A second table
times one GRPO step (sample, reward, replay, update) with closed and open gates.

Usage:
  python benchmarks/bench_hrpo.py
  python benchmarks/bench_hrpo.py --size deepscaler --samples 4 --new-tokens 16
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch
from rich.console import Console
from rich.table import Table

from bench_sampling import build, timed  # same folder: the model builder and the timer

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine
from attractor.latent.hrpo.model import HybridConfig, HybridModel, gate_param_groups
from attractor.latent.hrpo.train import grpo_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["tiny", "deepscaler"], default="tiny")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok, prompt = build(args.size, "cpu", torch.float32)
    cfg = SamplingConfig(samples=args.samples, temperature=0.5, max_new_tokens=args.new_tokens)
    engine = HFEngine(model, tok)
    closed = HybridModel(model, tok, HybridConfig(gated=False))
    gated = HybridModel(model, tok, HybridConfig(gated=True))
    prompts = [prompt] * args.samples
    hybrid_cfg = SamplingConfig(samples=1, temperature=0.5, max_new_tokens=args.new_tokens)
    samplers = {  # each returns the tokens it made
        "hf engine (baseline)": lambda: sum(
            r.n_tokens for r in engine.generate(["q"], [prompt], cfg)[0]),
        "hybrid, gates closed (a = 1)": lambda: sum(
            len(t) for t in closed.generate(prompts, hybrid_cfg).tokens),
        "hybrid, gates open (HRPO)": lambda: sum(
            len(t) for t in gated.generate(prompts, hybrid_cfg).tokens),
    }
    rows = []
    for name, fn in samplers.items():
        tokens = fn()  # warm-up (and the token count: seeded, the same every repeat)
        secs = statistics.median(timed(fn, "cpu") for _ in range(args.repeats))
        rows.append((name, secs, tokens))
    base = rows[0][1] / rows[0][2]
    table = Table(title=f"{args.size}: {args.samples} samples x up to {args.new_tokens} tokens, "
                        f"T = 0.5, median of {args.repeats}")
    for c in ("sampler", "seconds", "tokens", "ms / token", "vs baseline (per token)"):
        table.add_column(c)
    for name, secs, n in rows:
        table.add_row(name, f"{secs:.3f}", str(n), f"{1000 * secs / n:.2f}",
                      f"{(secs / n) / base:.2f}x")
    Console().print(table)
    if args.size != "tiny":
        return
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    problems = load_task("synthetic:prosqa:n=4,seed=99")[0]
    pids = [prompt_ids(p, tok) for p in problems]
    step_table = Table(title="one GRPO step: 4 questions x 4 samples, KL 0.005 (ref forward)")
    for c in ("arm", "seconds", "vs grpo"):
        step_table.add_column(c)
    times = {}
    for gate_open in (False, True):
        hm = HybridModel(model, tok, HybridConfig(gated=gate_open))
        ref = copy.deepcopy(hm).eval()
        opt = torch.optim.AdamW(gate_param_groups(hm.base, hm.gate, 0.0), weight_decay=0.0)
        grpo_step(hm, ref, opt, problems, pids, 4, 0.5, 0.005, seed=0)  # warm-up
        times[gate_open] = statistics.median(
            timed(lambda: grpo_step(hm, ref, opt, problems, pids, 4, 0.5, 0.005, seed=1), "cpu")
            for _ in range(args.repeats))
    for gate_open, name in ((False, "grpo (gates closed)"), (True, "hrpo")):
        step_table.add_row(name, f"{times[gate_open]:.3f}",
                           f"{times[gate_open] / times[False]:.2f}x")
    Console().print(step_table)


if __name__ == "__main__":
    main()
