"""CoLaR's latents on the KV cache (``CoLaR.generate``) against re-forwarding the prefix.

Baseline, same model, batch, prompt and latent count: each latent re-runs the decoder over the
whole sequence so far (question embeddings plus every earlier latent) without a cache, reads the
last position's post-norm state and asks the latent head for the next latent -- what a CoLaR
written without the cache does (CoLaR's own ``latent_generate`` keeps the cache). Both give the
same states; the table prints the largest difference beside the times. The latent head here is
untrained (the cost does not depend on its weights); ``--checkpoint`` times a trained one.

Usage:
  python benchmarks/bench_colar.py                              # embedded tiny model
  python benchmarks/bench_colar.py --size deepscaler --batch 2 --latents 8
      (a Qwen2 config with DeepScaleR-1.5B's dimensions, random weights, built locally)
"""
from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

from bench_sampling import build, timed  # same folder: the model builder and the timer

from attractor.latent.colar.model import CoLaR, ColarConfig


@torch.no_grad()
def reforward(colar: CoLaR, prompts: list[list[int]], c: int, latents: int) -> torch.Tensor:
    """The state after the last latent, re-running the decoder over the whole sequence."""
    decoder = colar.base.get_decoder()
    ids = torch.tensor([colar.question_ids(p, c) for p in prompts], device=colar.device)
    embeds = colar.base.get_input_embeddings()(ids)
    h = decoder(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1]
    for _ in range(latents):
        x = (colar.head(h.float()).mean * colar.cfg.embeds_std).to(h.dtype)
        embeds = torch.cat([embeds, x[:, None]], dim=1)
        h = decoder(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1]
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "deepscaler"], default="tiny")
    ap.add_argument("--checkpoint", default=None, help="a colar checkpoint (tiny size only)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--latents", type=str, default="4,16")
    ap.add_argument("--compression", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, tok, prompt = build(args.size, args.device, dtype)
    if args.checkpoint:
        from attractor.latent.checkpoint import load_colar

        colar, _ = load_colar(args.checkpoint, model, tok, device=args.device)
    else:
        torch.manual_seed(0)
        colar = CoLaR(model, tok, ColarConfig()).to(args.device).eval()
    prompts = [prompt] * args.batch  # same length: both paths see an unpadded batch
    table = Table(title=f"CoLaR latents at c={args.compression}, {args.size}, batch "
                        f"{args.batch}, prompt {len(prompt)} tokens ({args.device})")
    for col in ("latents", "cached s", "re-forward s", "speed-up", "max |dh|"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.latents.split(",")):
        def cached():
            return colar.generate(prompts, args.compression, max_new_tokens=1, n_latents=n)

        state = cached().states[0][-1]
        diff = (state.float() - reforward(colar, prompts, args.compression, n)[0].float().cpu()
                ).abs().max().item()
        best = {"cached": float("inf"), "reforward": float("inf")}
        for _ in range(args.repeats):
            best["cached"] = min(best["cached"], timed(cached, args.device))
            best["reforward"] = min(best["reforward"], timed(
                lambda: reforward(colar, prompts, args.compression, n), args.device))
        table.add_row(str(n), f"{best['cached']:.3f}", f"{best['reforward']:.3f}",
                      f"{best['reforward'] / best['cached']:.2f}x", f"{diff:.1e}")
    Console().print(table)


if __name__ == "__main__":
    main()
