"""Which layers and token positions to capture.

Layer numbering follows transformers' ``output_hidden_states``: layer 0 is the embedding output,
layer i (1 <= i < L) the output of decoder layer i, and layer L (= ``num_hidden_layers``) the
last decoder layer's output *after the final norm*.

Position specs (all relative to the completion; ``token_index`` counts from the start of
prompt + completion):
    ``frac:F``   the completion token at floor(F * (C - 1)), F in [0, 1]
    ``every:K``  completion tokens K-1, 2K-1, ... (one vector each)
    ``chunk:W``  the mean over each non-overlapping W-token chunk of the reasoning span (the
                 last, shorter chunk included, as in the Latent-Trajectory reference, which
                 chunks the thinking text up to and including ``</think>``: the span ends there
                 where the model writes one, else before the answer marker the grader read,
                 else it is the whole completion; ``token_index`` is null); bare ``chunk`` is
                 ``chunk:500``, the paper's chunk
    ``last:K``   the last K completion tokens (fewer when the completion is shorter)
    ``answer``   the token just before the extracted answer span (none when there is no answer)
    ``decisive`` the token just before the decisive token, the first token where a right and a
                 wrong answer differ (ProsQA: the option's concept; ProntoQA: True/False; math:
                 the first answer token); see :mod:`attractor.capture.decisive`
"""
from __future__ import annotations

from dataclasses import dataclass

from attractor.errors import ConfigError

DEFAULT_CHUNK = 500  # "Tracing the Traces" averages hidden states over 500-token chunks
SINGLE = ("answer", "decisive")


@dataclass(frozen=True)
class PositionSpec:
    """One parsed position spec."""

    kind: str
    value: float = 0.0

    @property
    def text(self) -> str:
        """The spec as the user wrote it (and as ``latents/index.parquet`` stores it)."""
        if self.kind in SINGLE:
            return self.kind
        v = self.value
        return f"{self.kind}:{int(v) if self.kind != 'frac' else _fmt(v)}"


def _fmt(v: float) -> str:
    return f"{v:g}"


def parse_positions(spec: str) -> list[PositionSpec]:
    """Parse ``--positions`` (comma-separated specs)."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item in SINGLE:
            out.append(PositionSpec(item))
            continue
        if item == "chunk":
            item = f"chunk:{DEFAULT_CHUNK}"
        kind, sep, val = item.partition(":")
        if not sep or kind not in ("frac", "every", "chunk", "last"):
            raise ConfigError(f"--positions: '{item}' is not frac:F, every:K, chunk[:W], last:K, "
                              "answer or decisive")
        try:
            num = float(val) if kind == "frac" else int(val)
        except ValueError:
            raise ConfigError(f"--positions: '{item}' needs a number after ':'") from None
        if kind == "frac" and not 0 <= num <= 1:
            raise ConfigError(f"--positions: '{item}' falls outside the completion "
                              "(a fraction must be in [0, 1])")
        if kind != "frac" and num < 1:
            raise ConfigError(f"--positions: '{item}' needs a positive integer")
        out.append(PositionSpec(kind, float(num)))
    if not out:
        raise ConfigError("--positions: no position given")
    texts = [p.text for p in out]
    dup = sorted({t for t in texts if texts.count(t) > 1})
    if dup:
        raise ConfigError(f"--positions: {', '.join(dup)} given twice")
    return out


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """Parse ``--layers`` (``all``, ``every:K``, or a list like ``0,4,8``) for a model with
    ``num_layers`` decoder layers (valid layers: 0 .. num_layers)."""
    spec = spec.strip()
    if spec == "all":
        return list(range(num_layers + 1))
    if spec.startswith("every:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--layers: '{spec}' needs an integer step") from None
        if k < 1:
            raise ConfigError(f"--layers: '{spec}' needs a positive step")
        layers = list(range(0, num_layers + 1, k))
        return layers if layers[-1] == num_layers else layers + [num_layers]
    try:
        layers = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--layers: '{spec}' is not all, every:K or a list of integers") \
            from None
    bad = [x for x in layers if not 0 <= x <= num_layers]
    if bad or not layers:
        raise ConfigError(f"--layers: the model has layers 0..{num_layers} (0 = embeddings, "
                          f"{num_layers} = after the final norm); got {bad or spec}")
    return layers


@dataclass(frozen=True)
class Target:
    """One vector to capture for a rollout: a single token or the mean over a token range."""

    position: str
    occurrence: int
    start: int            # token index in prompt + completion (inclusive)
    end: int              # exclusive; end - start == 1 for a single token

    @property
    def token_index(self) -> int | None:
        """The token index of a single-token target (None for a chunk mean)."""
        return self.start if self.end - self.start == 1 else None


def resolve(specs: list[PositionSpec], prompt_len: int, completion_len: int,
            answer_token: int | None, decisive_token: int | None = None,
            reasoning_len: int | None = None) -> list[Target]:
    """Every target of one rollout. ``answer_token`` and ``decisive_token`` are the completion
    indices of the tokens before the answer span and before the decisive token, or None;
    ``reasoning_len`` is the number of completion tokens that chunks cover (the reasoning span,
    :func:`reasoning_tokens`; None: the whole completion)."""
    c, p = completion_len, prompt_len
    c_reason = c if reasoning_len is None else min(reasoning_len, c)
    out: list[Target] = []
    if c == 0:
        return out
    for s in specs:
        if s.kind == "frac":
            i = int(s.value * (c - 1))
            out.append(Target(s.text, 0, p + i, p + i + 1))
        elif s.kind == "every":
            k = int(s.value)
            out += [Target(s.text, j, p + i, p + i + 1)
                    for j, i in enumerate(range(k - 1, c, k))]
        elif s.kind == "chunk":
            w = int(s.value)
            out += [Target(s.text, j, p + i, p + min(i + w, c_reason))
                    for j, i in enumerate(range(0, c_reason, w))]
        elif s.kind == "last":
            k = int(s.value)
            out += [Target(s.text, j, p + i, p + i + 1)
                    for j, i in enumerate(range(max(0, c - k), c))]
        else:
            at = answer_token if s.kind == "answer" else decisive_token
            if at is not None:
                out.append(Target(s.text, 0, p + at, p + at + 1))
    return out


def reasoning_tokens(tokenizer, completion_ids: list[int], text: str) -> tuple[int, str]:
    """How many completion tokens the reasoning span holds, and its end's source (``think``,
    ``answer_marker`` or ``completion``: :func:`attractor.grading.extract.reasoning_end`). A
    span ending inside a token keeps that token for ``</think>`` and drops it for a marker."""
    from attractor.capture.decisive import token_holding
    from attractor.grading.extract import reasoning_end

    end, source = reasoning_end(text)
    if source == "completion":
        return len(completion_ids), source
    if source == "think":
        return token_holding(tokenizer, completion_ids, end - 1) + 1, source
    return token_holding(tokenizer, completion_ids, end), source
