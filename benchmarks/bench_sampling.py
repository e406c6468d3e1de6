"""Sampling throughput of attractor's HF engine against transformers baselines, same process.

Baselines, same model, prompt, N and token budget (EOS ignored so every method makes exactly
N x M tokens):
  loop      N calls of ``model.generate`` with one sample each (what throw-away scripts do)
  nrs       one ``model.generate(num_return_sequences=N)`` call
  attractor ``HFEngine.generate``: one prefill shared by the N samples, per-sample seeds
  vLLM      (``--engine vllm``) attractor's vLLM requests: N seeded n=1 requests, with
            logprobs=20 (what ``--engine vllm`` asks for) and without

Usage:
  python benchmarks/bench_sampling.py                       # the embedded tiny model, N=32
  python benchmarks/bench_sampling.py --size deepscaler --samples 8 --new-tokens 8
      (a Qwen2 config with DeepScaleR-1.5B's dimensions, random weights, built locally)
  .venv-vllm/bin/python benchmarks/bench_sampling.py --engine vllm     # vLLM's CPU build
  python benchmarks/bench_sampling.py --engine vllm --size deepscaler --samples 32 \
      --new-tokens 512 --skip-loop                          # a GPU with the vllm extra
"""
from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine


def build(size: str, device: str, dtype: torch.dtype):
    """(model, tokenizer, prompt ids) for the chosen size."""
    from attractor.models.load import load
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    if size == "tiny":
        model, tok = load("tiny", device=device, dtype=str(dtype).replace("torch.", ""))
        problem = load_task("synthetic:prosqa:n=1,seed=99")[0][0]
        return model, tok, prompt_ids(problem, tok, chat_template=False)
    if size == "smollm2":  # the real model: the first GSM8K test question, chat template on
        model, tok = load("smollm2", device=device, dtype=str(dtype).replace("torch.", ""))
        problem = load_task("gsm8k", limit=1)[0][0]
        return model, tok, prompt_ids(problem, tok, chat_template=True)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from attractor.models.tiny_tokenizer import build_tokenizer

    cfg = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                      num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                      max_position_embeddings=131072, rope_theta=10000.0,
                      tie_word_embeddings=False, bos_token_id=151646, eos_token_id=151643,
                      pad_token_id=151643)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    tok = build_tokenizer()
    tok.pad_token_id = 151643
    tok.eos_token_id = 151643
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 150000, (256,), generator=g).tolist()
    return model, tok, prompt


def vllm_rows(size: str, model, tok, prompt: list[int], n: int, m: int) -> dict[str, float]:
    """Seconds of attractor's vLLM requests (N seeded n=1 requests) with and without
    logprobs=20, EOS ignored, after a warm-up call (vLLM's first call pays one-off costs)."""
    import tempfile

    from attractor.engines.vllm_engine import VLLMEngine
    from attractor.models.load import TINY_DIR, model_path

    if size == "tiny":
        path = str(TINY_DIR)
    elif size == "smollm2":
        path = str(model_path("smollm2"))
    else:  # the random DeepScaleR-shaped model: vLLM loads it from a directory
        path = tempfile.mkdtemp(prefix="bench-vllm-")
        model.save_pretrained(path)
        tok.save_pretrained(path)
    engine = VLLMEngine(path)
    vllm, llm = engine.vllm, engine.llm

    def run(logprobs):
        params = [vllm.SamplingParams(n=1, seed=i, temperature=1.0, top_p=1.0, max_tokens=m,
                                      ignore_eos=True, logprobs=logprobs, detokenize=False)
                  for i in range(n)]
        out = llm.generate([{"prompt_token_ids": prompt}] * n, params, use_tqdm=False)
        made = sum(len(o.outputs[0].token_ids) for o in out)
        assert made == n * m, f"vLLM made {made} tokens, expected {n * m}"

    run(20)  # warm-up
    rows = {}
    for label, logprobs in (("vLLM, logprobs=20 (--engine vllm)", 20),
                            ("vLLM, no logprobs", None)):
        t = time.perf_counter()
        run(logprobs)
        rows[label] = time.perf_counter() - t
    return rows


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["tiny", "smollm2", "deepscaler"], default="tiny")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow per-sample loop")
    ap.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                    help="vllm: add vLLM rows (needs vLLM: the vllm extra or .venv-vllm)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype) if args.dtype else (
        torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    model, tok, prompt = build(args.size, args.device, dtype)
    n, m = args.samples, args.new_tokens
    ids = torch.tensor([prompt], device=args.device)
    gen_kw = dict(max_new_tokens=m, min_new_tokens=m, do_sample=True, temperature=1.0, top_p=1.0,
                  top_k=0, pad_token_id=tok.pad_token_id)
    engine = HFEngine(model, tok, max_batch_rows=max(256, n), ignore_eos=True)
    cfg = SamplingConfig(samples=n, temperature=1.0, max_new_tokens=m, seed=0)
    results: dict[str, float] = {}
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, do_sample=False,
                       pad_token_id=tok.pad_token_id)  # warm-up
        engine.generate(["w"], [prompt], SamplingConfig(samples=2, max_new_tokens=2))
        if not args.skip_loop:
            def loop():
                for i in range(n):
                    torch.manual_seed(i)
                    model.generate(ids, **gen_kw)
            results["loop (N x generate)"] = timed(loop, args.device)
        results["generate(num_return_sequences=N)"] = timed(
            lambda: model.generate(ids, num_return_sequences=n, **gen_kw), args.device)
        out = {}
        results["attractor HFEngine"] = timed(
            lambda: out.setdefault("r", engine.generate(["q"], [prompt], cfg)), args.device)
    made = sum(r.n_tokens for r in out["r"][0])
    assert made == n * m, f"engine made {made} tokens, expected {n * m}"
    if args.engine == "vllm":
        results.update(vllm_rows(args.size, model, tok, prompt, n, m))
    base_loop = results.get("loop (N x generate)")
    base_nrs = results["generate(num_return_sequences=N)"]
    t = Table(title=f"sampling: {args.size}, {sum(p.numel() for p in model.parameters())/1e6:.1f}M "
              f"params, {args.device} {str(dtype).replace('torch.', '')}, prompt {len(prompt)} "
              f"tokens, N={n}, {m} new tokens each, {torch.get_num_threads()} threads")
    for c in ("method", "seconds", "tokens/s", "x vs loop", "x vs num_return_sequences"):
        t.add_column(c)
    for name, sec in results.items():
        t.add_row(name, f"{sec:.2f}", f"{n * m / sec:.0f}",
                  f"{base_loop / sec:.2f}" if base_loop else "-", f"{base_nrs / sec:.2f}")
    Console().print(t)


if __name__ == "__main__":  # vLLM starts its engine core with spawn: keep the guard
    main()
