"""What every sampling engine returns: one :class:`Rollout` per (question, sample)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:   # annotations only: config imports nothing of engines
    from attractor.config import SamplingConfig


@dataclass
class Rollout:
    """One sampled completion.

    ``token_logprobs`` and ``token_entropies`` (nats) are of the *sampling* distribution (after
    temperature, top-k and top-p); for greedy decoding, of the model's own distribution (T=1).
    ``token_confidences`` is DeepConf's token confidence: minus the mean raw (T=1, unfiltered)
    log-probability of the 20 most likely tokens, plus the sampled token when it is outside
    them (:mod:`attractor.engines.confidence`).
    The stop token is not part of ``completion_token_ids``, but its confidence is the last entry
    of ``token_confidences`` (DeepConf's reference averages every returned position, EOS
    included), which then has one entry more than the completion: :func:`spent_tokens`.
    ``stop_token_id`` is that stop token where the engine knows it (the hf engine; not stored
    in the run), so a trainer can replay exactly the tokens the model produced.
    """

    question_id: str
    sample_id: int
    seed: int
    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    text: str
    finish_reason: str
    token_logprobs: list[float] = field(default_factory=list)
    token_entropies: list[float] = field(default_factory=list)
    token_confidences: list[float] = field(default_factory=list)
    stop_token_id: int | None = None

    @property
    def n_tokens(self) -> int:
        """Completion length in tokens."""
        return len(self.completion_token_ids)


@runtime_checkable
class Engine(Protocol):
    """A sampler: ``generate(prompts, cfg)`` returns, per prompt, ``cfg.samples`` rollouts with
    sample ids 0..N-1 and seeds ``cfg.seed + i``. Every engine (hf, ray, vllm) is one."""

    name: str

    def generate(self, question_ids: list[str], prompts: list[list[int]],
                 cfg: SamplingConfig) -> list[list[Rollout]]:
        ...

    def describe(self) -> dict[str, Any]:
        """The manifest's ``engine`` record (name, version, device, ...)."""
        ...


Chunk = tuple[int, list[str], list[list[int]]]  # (chunk index, question ids, prompts)


@runtime_checkable
class StreamingEngine(Engine, Protocol):
    """An engine that schedules a whole run itself (the Ray engine): ``stream(chunks, cfg)``
    yields ``(chunk index, rollouts per question)`` as each chunk completes."""

    def stream(self, chunks: list[Chunk], cfg: SamplingConfig
               ) -> Iterator[tuple[int, list[list[Rollout]]]]:
        ...


def spent_tokens(n_tokens: int, confidences) -> int:
    """Tokens a trace cost as DeepConf's reference counts them (``len(token_ids)``, the stop
    token included): the completion's, or one more where the stop token's confidence is kept."""
    return max(int(n_tokens or 0), 0 if confidences is None else len(confidences))
