"""Ray engine throughput with 1 and 2 workers against the hf engine in one process, same
questions, same seeds (so the same tokens: the runs are checked equal).

Each Ray run starts its workers (model load included) inside the timed region, as a user's run
does; the local cluster itself is started once, before timing.

Usage: python benchmarks/bench_ray.py [--limit 32] [--samples 8] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from attractor.config import RunConfig, SamplingConfig
from attractor.pipeline.sample import run_sample
from attractor.store.run_store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--task", default="prosqa")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-batch-rows", type=int, default=64)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results = []
    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine, workers in (("hf, in process", "hf", 1), ("ray, 1 worker", "ray", 1),
                                      ("ray, 2 workers", "ray", 2)):
            cfg = RunConfig(task=args.task, model=args.model, limit=args.limit, engine=engine,
                            sampling=SamplingConfig(samples=args.samples, temperature=1.0,
                                                    max_new_tokens=args.max_new_tokens, seed=0))
            out = Path(tmp) / f"{engine}{workers}"
            t0 = time.perf_counter()
            run_sample(cfg, str(out), workers=workers, max_batch_rows=args.max_batch_rows,
                       log=lambda _: None, show_progress=False)
            wall = time.perf_counter() - t0
            df = RunStore(out).rollouts(["question_id", "sample_id", "text", "n_tokens"])
            texts[name] = df.sort_values(["question_id", "sample_id"])["text"].tolist()
            results.append((name, int(df["n_tokens"].sum()), wall))
    same = len({tuple(v) for v in texts.values()}) == 1
    t = Table(title=f"{args.model}, {args.limit} questions x {args.samples} samples, "
                    f"{args.max_new_tokens} new tokens (rollouts identical: {same})")
    for c in ("engine", "tokens", "wall s", "tokens/s", "vs ray 1 worker"):
        t.add_column(c)
    base = results[1][1] / results[1][2]
    for name, tokens, wall in results:
        t.add_row(name, f"{tokens:,}", f"{wall:.1f}", f"{tokens / wall:,.0f}",
                  f"{tokens / wall / base:.2f}x")
    Console().print(t)


if __name__ == "__main__":
    main()
