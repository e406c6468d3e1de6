"""The mechanism commands' forwards against a plain forward of the same batch, same process.

Rows (median of --repeats, each after one warm-up):
  plain forward (SDPA)        model(ids): what any user's forward costs; the baseline (1.0x)
  depth, no skipping          hooks gathering h_l, a_l, m_l at 4 positions per row + logit lens
                              at every layer (issue 20 target: within 1.5x)
  depth with skipping sweep   the above plus one forward per skipped layer (target: L + 2 x)
  attention (eager)           per-head entropy, lookback ratio, gold-sentence mass from eager
                              weights (target: within 3x of the SDPA forward)
  plain forward (eager)       the eager forward alone, to separate eager's own cost

Usage:
  python benchmarks/bench_depth.py                                   # embedded tiny model
  python benchmarks/bench_depth.py --size deepscaler --batch 2 --length 256
      (a Qwen2 config with DeepScaleR-1.5B's dimensions, random weights, built locally)
"""
from __future__ import annotations

import argparse
import statistics

import torch
from rich.console import Console
from rich.table import Table

from bench_sampling import build, timed  # same folder: the model builder and the timer

from attractor.mechanism.attention import AttnItem, attention_batch
from attractor.mechanism.depth import DepthItem, depth_batch
from attractor.mechanism.modules import decoder_modules
from attractor.mechanism.prosqa_steps import Step


def median_time(fn, device: str, repeats: int) -> float:
    fn()
    return statistics.median(timed(fn, device) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "deepscaler"], default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, _, _ = build(args.size, args.device, dtype)
    mods = decoder_modules(model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (args.batch, args.length), generator=g)
    rows = ids.tolist()
    t, p = args.length, args.length // 2
    positions = [p, (p + t) // 2, t - 2, t - 1]
    depth_items = [DepthItem(r, positions, [("x", i) for i in range(4)], 3) for r in rows]
    spans = [(a, a + 6) for a in range(0, p - 6, 6)]
    attn_items = [AttnItem(r, p, [Step(q, (0, 1)) for q in range(p + 1, t, 7)], spans)
                  for r in rows]
    dev_ids = ids.to(args.device)

    def plain():
        with torch.inference_mode():
            model(dev_ids)

    res = {}
    model.set_attn_implementation("sdpa")
    res["plain forward (SDPA)"] = median_time(plain, args.device, args.repeats)
    res["depth, no skipping"] = median_time(
        lambda: depth_batch(mods, depth_items, 0, skip=False), args.device, args.repeats)
    res["depth with skipping sweep"] = median_time(
        lambda: depth_batch(mods, depth_items, 0, skip=True), args.device, args.repeats)
    model.set_attn_implementation("eager")
    res["attention (eager)"] = median_time(
        lambda: attention_batch(mods, attn_items, 0), args.device, args.repeats)
    res["plain forward (eager)"] = median_time(plain, args.device, args.repeats)
    base = res["plain forward (SDPA)"]
    n_layers = mods.n_layers
    targets = {"depth, no skipping": "<= 1.5x", "depth with skipping sweep":
               f"<= {n_layers + 2}x (L + 2)", "attention (eager)": "<= 3x"}
    table = Table(title=f"mechanism forwards, {args.size} ({n_layers} layers), batch "
                        f"{args.batch} x {args.length} tokens, {args.device}, "
                        f"{args.threads} threads")
    for col in ("what", "seconds", "x plain forward", "issue target"):
        table.add_column(col, justify="right")
    for k, v in res.items():
        table.add_row(k, f"{v:.3f}", f"{v / base:.2f}", targets.get(k, ""))
    Console().print(table)


if __name__ == "__main__":
    main()
