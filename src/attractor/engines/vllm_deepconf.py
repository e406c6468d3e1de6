"""DeepConf's online stop inside vLLM: a V1 logits processor that ends a trace once the mean
token confidence of its last ``window`` tokens falls below its threshold (the reference's
``ConfPerReqLogitsProcessor`` pattern: force the EOS token).

It cuts where the hf engine cuts. At each step the processor first completes the confidence of
the token sampled at the previous step (:func:`~attractor.engines.confidence.confidence_from_logits`
on that step's raw logits and the token now known, so the "sampled token outside the top 20"
case is the engine's own), then, when the last ``window`` confidences are all known and their
mean is below the threshold, lets only EOS through: the trace keeps every token up to the one
that completed the low window, exactly the hf engine's cut, and the forced EOS is dropped like
any stop token. The client relabels the finish reason from the returned log-probabilities
(:func:`label_cut`), which also applies the hf engine's rule for traces shorter than the window.

Only imported where vLLM is: vLLM loads the class in its engine process by reference.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from attractor.engines.confidence import TOP_LOGPROBS

KEY = "attractor_deepconf"  # SamplingParams.extra_args[KEY] = (threshold, window, eos id)


def token_confidence(logits: torch.Tensor, chosen: int, k: int = TOP_LOGPROBS) -> float:
    """C_i of one position from its raw logits and the sampled token, with the arithmetic of
    the client's :func:`~attractor.engines.confidence.confidence_from_logprobs` on vLLM's
    returned dict (float32 log-probabilities summed as Python floats), so that the processor
    and the stored confidences agree to the last bit that matters at a threshold."""
    lp = logits.float().log_softmax(-1)
    top = lp.topk(min(k, lp.shape[-1])).values.tolist()
    own = float(lp[chosen])
    vals = top + ([own] if own < top[-1] else [])
    return -sum(vals) / len(vals)


class _Cut:
    """One request's window of token confidences, averaged as
    :func:`attractor.metrics.confidence.group_confidences` does (a difference of float64
    cumulative sums), so the processor, the client's relabelling and the threshold agree."""

    def __init__(self, threshold: float, window: int, eos_id: int) -> None:
        self.threshold, self.window, self.eos_id = threshold, window, eos_id
        self.cum: deque[float] = deque([0.0], maxlen=window + 1)  # the last window + 1 sums
        self.prev: torch.Tensor | None = None  # raw logits of the previous step

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        if self.prev is not None and output_ids:
            self.cum.append(self.cum[-1] + token_confidence(self.prev, output_ids[-1]))
        if len(self.cum) == self.window + 1 and \
                (self.cum[-1] - self.cum[0]) / self.window < self.threshold:
            keep = logits[self.eos_id].clone()
            logits.fill_(float("-inf"))
            logits[self.eos_id] = keep
            self.prev = None
            return logits
        self.prev = logits.detach().float().clone()
        return logits


class DeepConfCut(AdapterLogitsProcessor):
    """The vLLM logits processor (``LLM(logits_processors=[DeepConfCut])``); it acts only on
    requests whose ``extra_args`` carry :data:`KEY`."""

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins

    def new_req_logits_processor(self, params: SamplingParams) -> _Cut | None:
        spec: Any = (params.extra_args or {}).get(KEY)
        if spec is None:
            return None
        threshold, window, eos_id = spec
        return _Cut(float(threshold), int(window), int(eos_id))
