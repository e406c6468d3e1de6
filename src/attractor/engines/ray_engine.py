"""The Ray engine (``--engine ray``, extra ``attractor[ray]``): Ray Data fans the rows
(question, sample id, seed) of a chunk out over a pool of workers, each running the hf engine on
its own copy of the model; rows of one question that land in the same batch share one prefill.

Sample ``i`` is seeded ``seed + i`` on whichever worker makes it, so a Ray run holds the rollouts
an hf run makes (tested). With ``--backend vllm`` each worker runs its own vLLM engine on the
same one-row-per-(question, sample, seed) layout (plain Ray Data actors rather than
``ray.data.llm``, whose processor keeps one output per row and asks for GPU workers), and the
rollouts equal ``--engine vllm``'s.

Ray is started locally (``ray.init``) unless ``RAY_ADDRESS`` names a cluster.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from attractor.config import SamplingConfig
from attractor.engines.base import Rollout
from attractor.engines.hf import generate_requests
from attractor.errors import ConfigError

ROLLOUT_FIELDS = ("question_id", "sample_id", "seed", "prompt_token_ids", "completion_token_ids",
                  "text", "finish_reason", "token_logprobs", "token_entropies",
                  "token_confidences")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'attractor[ray]'") from None
    return ray


class _HFWorker:
    """A Ray Data actor: loads the model once, then samples batches of rows (the hf engine, or
    with ``backend="vllm"`` a vLLM engine of its own)."""

    def __init__(self, model: str, dtype: str, device: str, threads: int,
                 trust_remote_code: bool, max_batch_rows: int, backend: str = "hf") -> None:
        if backend == "vllm":
            from attractor.engines.vllm_engine import VLLMEngine

            self.engine = VLLMEngine(model, dtype=dtype, trust_remote_code=trust_remote_code)
            return
        import torch

        from attractor.engines.hf import HFEngine
        from attractor.models.load import load

        torch.set_num_threads(threads)
        mdl, tok = load(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        self.engine = HFEngine(mdl, tok, max_batch_rows=max_batch_rows)

    def __call__(self, batch: dict[str, Any], sampling: dict[str, Any]) -> dict[str, list]:
        cfg = SamplingConfig(**sampling)
        requests = contiguous_requests([str(q) for q in batch["question_id"]],
                                       list(batch["sample_id"]))
        # plain ints: Ray hands numpy arrays, which vLLM's request serialiser refuses
        prompt_of = {str(q): [int(t) for t in p]
                     for q, p in zip(batch["question_id"], batch["prompt_token_ids"])}
        out: dict[str, list] = {k: [] for k in ROLLOUT_FIELDS}
        groups = generate_requests(self.engine, [(q, prompt_of[q], first, count)
                                                 for q, first, count in requests], cfg)
        for group in groups:
            for r in group:
                for k in ROLLOUT_FIELDS:
                    out[k].append(getattr(r, k))
        return out


def contiguous_requests(question_ids: list[str], sample_ids: list[int]) -> list[tuple[str, int, int]]:
    """Group rows into ``(question, first sample, count)`` runs of consecutive sample ids."""
    per: dict[str, list[int]] = {}
    for q, s in zip(question_ids, sample_ids):
        per.setdefault(q, []).append(int(s))
    out = []
    for q, ids in per.items():
        ids.sort()
        start = prev = ids[0]
        for s in ids[1:] + [None]:
            if s is not None and s == prev + 1:
                prev = s
                continue
            out.append((q, start, prev - start + 1))
            if s is not None:
                start = prev = s
    return out


class RayEngine:
    """Sampling fanned out over Ray Data workers (``engine = "ray"``)."""

    name = "ray"

    def __init__(self, model: str, *, workers: int = 2, dtype: str = "auto", device: str = "cpu",
                 trust_remote_code: bool = False, max_batch_rows: int = 256,
                 backend: str = "hf") -> None:
        if workers <= 0:
            raise ConfigError(f"--workers must be positive, got {workers}")
        self.ray = _import_ray()
        if not self.ray.is_initialized():
            if os.environ.get("RAY_ADDRESS"):
                self.ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
            else:
                # one logical CPU per worker plus one for Ray Data's own tasks (else they wait)
                self.ray.init(num_cpus=max(workers + 1, os.cpu_count() or 1),
                              include_dashboard=False,
                              log_to_driver=False, configure_logging=False)
        self.workers = workers
        self.max_batch_rows = max_batch_rows
        self.backend = backend
        self.ctor = dict(model=model, dtype=dtype, device=device, threads=1,
                         trust_remote_code=trust_remote_code, max_batch_rows=max_batch_rows,
                         backend=backend)

    def describe(self) -> dict[str, Any]:
        """The manifest's engine record: Ray's version, the pool and what each worker runs."""
        return {"name": self.name, "ray_version": self.ray.__version__, "workers": self.workers,
                "backend": self.backend, "device": self.ctor["device"],
                "max_batch_rows": self.max_batch_rows}

    def generate(self, question_ids: list[str], prompts: list[list[int]],
                 cfg: SamplingConfig) -> list[list[Rollout]]:
        """``cfg.samples`` rollouts per prompt, made by the worker pool."""
        return next(iter(self.stream([(0, question_ids, prompts)], cfg)))[1]

    def stream(self, chunks: list[tuple[int, list[str], list[list[int]]]], cfg: SamplingConfig):
        """Yield ``(chunk index, rollouts per question)`` as each chunk completes. All chunks go
        through one dataset, so the workers load the model once for the whole run."""
        rows = [{"chunk": k, "question_id": q, "sample_id": i, "seed": cfg.seed + i,
                 "prompt_token_ids": p}
                for k, qids, prompts in chunks for q, p in zip(qids, prompts)
                for i in range(cfg.samples)]
        if not rows:
            return
        batch = max(1, min(self.max_batch_rows, -(-len(rows) // self.workers)))
        ds = self.ray.data.from_items(rows, override_num_blocks=max(self.workers,
                                                                    len(rows) // batch))
        out = ds.map_batches(_HFWorker, batch_size=batch,
                             compute=self.ray.data.ActorPoolStrategy(size=self.workers),
                             num_cpus=1, batch_format="numpy",
                             fn_constructor_kwargs=self.ctor,
                             fn_kwargs={"sampling": asdict(cfg)})
        want = {k: (qids, len(qids) * cfg.samples) for k, qids, _ in chunks}
        chunk_of = {q: k for k, qids, _ in chunks for q in qids}
        got: dict[int, dict[tuple[str, int], Rollout]] = {k: {} for k in want}
        for rec in out.iter_rows():
            r = Rollout(**{k: _plain(rec[k]) for k in ROLLOUT_FIELDS})
            k = chunk_of[r.question_id]
            got[k][(r.question_id, r.sample_id)] = r
            qids, total = want[k]
            if len(got[k]) == total:
                yield k, [[got[k][(q, i)] for i in range(cfg.samples)] for q in qids]
                del got[k]


def _plain(value):
    """numpy scalars and arrays from Ray rows as Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
