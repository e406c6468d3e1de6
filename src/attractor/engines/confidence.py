"""DeepConf's token confidence, the same in every engine.

The reference (facebookresearch/deepconf, ``compute_confidence``) asks vLLM for ``logprobs=20``
and takes C_i = -mean(log-probabilities in the returned dict). vLLM V1 returns the log-probabilities
of the *raw* model distribution (before temperature, top-k and top-p; ``logprobs_mode`` =
``raw_logprobs``, its default), and the dict holds the 20 most likely tokens plus the sampled
token when it is not among them (21 entries then). attractor computes exactly that in every
engine, whatever the sampling settings: under top-p the processed distribution puts -inf on
every token outside the nucleus, which would turn a confident position into a low confidence.
The reference rounds C_i to 3 decimals; attractor keeps full precision.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

TOP_LOGPROBS = 20  # DeepConf's k (vLLM logprobs=20)
CONVENTION = ("deepconf: -mean of the raw (T=1, unfiltered) log-probabilities of the top-20 "
              "tokens, plus the sampled token when it is outside them")


def confidence_from_logprobs(logprobs: Mapping[int, float]) -> float:
    """C_i from one position's returned ``{token id: raw log-probability}`` (vLLM's dict)."""
    vals = [float(v) for v in logprobs.values() if not math.isnan(float(v))]
    return -sum(vals) / len(vals) if vals else float("nan")


def confidence_from_logits(logits: torch.Tensor, chosen: torch.Tensor,
                           k: int = TOP_LOGPROBS) -> torch.Tensor:
    """C_i per row from (rows, vocab) raw logits and the sampled token of each row, equal to
    what vLLM's returned dict gives (:func:`confidence_from_logprobs`)."""
    raw = logits.float().log_softmax(-1)
    top = raw.topk(min(k, raw.shape[-1]), dim=-1).values
    own = raw.gather(-1, chosen.view(-1, 1)).squeeze(-1)
    outside = (own < top[:, -1]).to(raw.dtype)
    return -(top.sum(-1) + outside * own) / (top.shape[-1] + outside)
