"""Continuous thoughts on the KV cache (``LatentLoop.think``) against re-forwarding the prefix.

Baseline, same model, batch, prompt and thought count: each thought re-runs the decoder over
the whole sequence so far (prompt embeddings plus every earlier thought) without a cache and
feeds back the last position's post-norm state -- what a loop written without the cache does.
Both produce the same states; the table prints the largest difference beside the times.

Usage:
  python benchmarks/bench_latent_loop.py                          # embedded tiny model
  python benchmarks/bench_latent_loop.py --size deepscaler --batch 2 --thoughts 6
      (a Qwen2 config with DeepScaleR-1.5B's dimensions, random weights, built locally)
"""
from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

from bench_sampling import build, timed  # same folder: the model builder and the timer

from attractor.latent.slr.config import preset
from attractor.latent.slr.loop import LatentLoop


@torch.no_grad()
def reforward(loop: LatentLoop, prompts: list[list[int]], thoughts: int) -> torch.Tensor:
    """The final thought state, re-running the decoder over the whole sequence per thought."""
    decoder = loop.base.get_decoder()
    ids = torch.tensor(prompts, device=loop.device)
    embeds = loop.base.get_input_embeddings()(ids)
    h = decoder(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1]
    for t in range(thoughts):
        embeds = torch.cat([embeds, loop.feed(h, t)[:, None]], dim=1)
        h = decoder(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1]
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "deepscaler"], default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--thoughts", type=str, default="6,24")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, tok, prompt = build(args.size, args.device, dtype)
    prompts = [prompt] * args.batch  # same length: both paths see an unpadded batch
    table = Table(title=f"continuous thoughts, {args.size}, batch {args.batch}, "
                        f"prompt {len(prompt)} tokens ({args.device})")
    for col in ("thoughts", "cached loop s", "re-forward s", "speed-up", "max |dh|"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.thoughts.split(",")):
        loop = LatentLoop(model, tok, preset("coconut", max_thoughts=n)).eval()
        with torch.no_grad():
            cached_state = loop.think(prompts, adaptive=False).states[-1]
        diff = (cached_state.float() - reforward(loop, prompts, n).float()).abs().max().item()
        best = {"cached": float("inf"), "reforward": float("inf")}
        for _ in range(args.repeats):
            with torch.no_grad():
                best["cached"] = min(best["cached"], timed(
                    lambda: loop.think(prompts, adaptive=False), args.device))
            best["reforward"] = min(best["reforward"], timed(
                lambda: reforward(loop, prompts, n), args.device))
        table.add_row(str(n), f"{best['cached']:.3f}", f"{best['reforward']:.3f}",
                      f"{best['reforward'] / best['cached']:.2f}x", f"{diff:.1e}")
    Console().print(table)


if __name__ == "__main__":
    main()
