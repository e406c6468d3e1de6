"""Capture cost: the hooked re-forward against generation, and against
``output_hidden_states=True`` on every position, same rollouts, same process.

  generation      sampling the rollouts with the HF engine (the baseline the capture adds to)
  hooks           attractor's capture: forward hooks keep only the requested positions
  all states      a plain forward with ``output_hidden_states=True`` (every layer, every
                  position), then picking the same positions

Peak memory is the high-water mark of the Python process's resident set during each method
(CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

Usage: python benchmarks/bench_capture.py [--model tiny|deepscaler] [--questions 8 --samples 8]
"""
from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from attractor.capture.positions import parse_positions, resolve
from attractor.capture.reforward import BatchItem, capture_batch, plan_batches
from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine


def peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["tiny", "deepscaler"], default="tiny")
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--positions", default="frac:0.25,frac:0.5,frac:0.75,last:4,chunk:16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from bench_sampling import build  # same model builders as the sampling benchmark

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, tok, prompt = build(args.model, args.device, dtype)
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    if args.model == "tiny":
        problems = load_task(f"synthetic:prosqa:n={args.questions},seed=77")[0]
        prompts = [prompt_ids(p, tok, chat_template=False) for p in problems]
    else:
        prompts = [prompt] * args.questions
    engine = HFEngine(model, tok, ignore_eos=True)
    cfg = SamplingConfig(samples=args.samples, temperature=1.0, max_new_tokens=args.new_tokens)
    t = time.perf_counter()
    groups = engine.generate([str(i) for i in range(len(prompts))], prompts, cfg)
    gen_s = time.perf_counter() - t
    gen_mem = peak_mb(args.device)
    specs = parse_positions(args.positions)
    layers = list(range(model.config.num_hidden_layers + 1))
    items = [BatchItem(r.prompt_token_ids + r.completion_token_ids,
                       resolve(specs, len(r.prompt_token_ids), r.n_tokens, None))
             for g in groups for r in g]
    budget = 16384
    batches = plan_batches([len(it.ids) for it in items], budget)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    hook_bytes = 0
    for b in batches:
        got = capture_batch(model, [items[i] for i in b], layers)
        hook_bytes = max(hook_bytes, sum(v.numel() * v.element_size() for v in got.values()))
    hook_s = time.perf_counter() - t
    hook_mem = peak_mb(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    all_bytes = 0
    with torch.inference_mode():
        for b in batches:
            width = max(len(items[i].ids) for i in b)
            ids = torch.zeros((len(b), width), dtype=torch.long)
            for k, i in enumerate(b):
                ids[k, :len(items[i].ids)] = torch.tensor(items[i].ids)
            hs = model(ids.to(args.device), output_hidden_states=True).hidden_states
            all_bytes = max(all_bytes, sum(h.numel() * h.element_size() for h in hs))
            for layer in layers:
                for k, i in enumerate(b):
                    for tg in items[i].targets:
                        hs[layer][k, tg.start:tg.end].float().mean(0).cpu()
    all_s = time.perf_counter() - t
    all_mem = peak_mb(args.device)
    tab = Table(title=f"capture: {args.model}, {args.device}, {len(items)} rollouts of "
                f"{args.new_tokens} tokens, {len(layers)} layers, positions {args.positions}")
    for c in ("method", "seconds", "x generation time", "hidden states held per batch MiB",
              "process peak MiB (high-water)"):
        tab.add_column(c)
    tab.add_row("generation (HF engine)", f"{gen_s:.2f}", "1.00", "-", f"{gen_mem:.0f}")
    tab.add_row("capture with hooks", f"{hook_s:.2f}", f"{hook_s / gen_s:.2f}",
                f"{hook_bytes / 2**20:.1f}", f"{hook_mem:.0f}")
    tab.add_row("output_hidden_states=True", f"{all_s:.2f}", f"{all_s / gen_s:.2f}",
                f"{all_bytes / 2**20:.1f}", f"{all_mem:.0f}")
    Console().print(tab)
    Console().print(f"hooks vs output_hidden_states: {all_s / hook_s:.2f}x faster")


if __name__ == "__main__":
    main()
