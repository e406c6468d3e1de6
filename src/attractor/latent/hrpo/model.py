"""HRPO's hybrid latent reasoning (Yue et al. 2025, arXiv 2505.18454; code Yueeeeeeee/HRPO):
until the answer marker, the input after each sampled token is a gated mix of that token's
embedding and the probability-weighted mix of all embeddings the token was drawn from,

    e = a * x + sqrt(1 - a^2 + eps) * (i * h~),   h~ = p^T W_e / ||p||_2,
    i = sigmoid(W_i x),   a = exp(-c * softplus(-Lambda) * sigmoid(W_r x)),   c = 8,

with Lambda initialised so that a^(1/r) is uniform in [0.99, 0.999] (their
``reset_lambda_parameters``); p is the sampling distribution after temperature, as their
patched ``generate`` reads it. Sampling (:func:`hybrid_sample`) runs the model on the mixed
embeddings with a KV cache; training replays the stored h~ through the current gates
(:func:`replay_logps`: the "vocabulary mixing in the replay path"), so the gates learn.

``force_a=1`` closes the gates exactly (a = 1, no h~ at all): sampling is then plain
sampling, bit for bit (the test compares with the hf engine), and training is plain GRPO.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attractor.config import SamplingConfig
from attractor.engines.hf import HFEngine, filter_logits
from attractor.models.kv_cache import cache_kwargs, output_cache

C = 8.0  # HRPO's ThinkingResidualLambda.c
EPS = 1e-8  # HRPO's eps under the square root
TAIL = 8  # tokens decoded to look for the marker (it is shorter than this in any tokenizer)


class HybridGate(nn.Module):
    """HRPO's thinking residual: gates W_r, W_i (d -> d, with bias) and Lambda (d)."""

    def __init__(self, hidden: int, r_min: float = 0.99, r_max: float = 0.999,
                 force_a: float | None = None) -> None:
        super().__init__()
        self.gate_r = nn.Linear(hidden, hidden)
        self.gate_i = nn.Linear(hidden, hidden)
        self.Lambda = nn.Parameter(torch.empty(hidden))
        self.force_a = force_a
        self.reset_lambda(r_min, r_max)

    @torch.no_grad()
    def reset_lambda(self, r_min: float, r_max: float) -> None:
        """Lambda = -log(u^(-1/c) - 1), u ~ U[r_min, r_max]: a = u^sigmoid(W_r x)."""
        u = torch.empty_like(self.Lambda).uniform_(r_min, r_max)
        self.Lambda.copy_(-torch.log(u ** (-1.0 / C) - 1))

    def gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, i) for token embeddings ``x``."""
        r = torch.sigmoid(self.gate_r(x))
        a = torch.exp(-C * F.softplus(-self.Lambda) * r)
        return a, torch.sigmoid(self.gate_i(x))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed input embeddings and a (the share of the token embedding)."""
        if self.force_a == 1.0:
            return x, torch.ones_like(x)
        a, i = self.gate(x)
        return a * x + torch.sqrt(1 - a.pow(2) + EPS) * (i * h), a


def mixed_embedding(probs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """h~ = p^T W_e / ||p||_2 for each row of ``probs`` (b, V)."""
    return (probs @ weight.float()) / probs.pow(2).sum(-1, keepdim=True).sqrt()


@dataclass
class HybridRollout:
    """Sampled completions with what the replay needs: per generated token fed back (all of a
    finished row's tokens, all but the last of a row cut at the budget), the h~ mixed into it
    and whether it was mixed (before the answer marker)."""

    tokens: list[list[int]]
    texts: list[str]
    mixes: list[torch.Tensor]        # (len(tokens) - 1, d): h~ for each fed token
    thinking: list[list[bool]]       # per fed token: mixed or not
    finished: list[bool]
    gate_share: float                # mean a over mixed positions (HRPO's embeds_ratio)
    logprobs: list[list[float]]      # per token (then the stop token): log p at sampling


def _repeats(prompts: list[list[int]]) -> int:
    """The largest k such that the prompts are consecutive runs of k equal prompts."""
    n = len(prompts)
    for k in range(n, 1, -1):
        if n % k == 0 and all(prompts[i] == prompts[i - i % k] for i in range(n)):
            return k
    return 1


@torch.no_grad()
def hybrid_sample(model, tok, gate: HybridGate, prompts: list[list[int]], cfg: SamplingConfig,
                  marker: str, seeds: list[int] | None = None) -> HybridRollout:
    """One completion per prompt, sampled as the hf engine samples (row r seeded
    ``cfg.seed + r`` unless ``seeds``), feeding back the gated mix until ``marker`` appears in
    the row's text. Greedy (temperature 0) mixes the T = 1 distribution."""
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    stop = HFEngine(model, tok).stop_ids
    b = len(prompts)
    k = _repeats(prompts)  # each prompt k times in a row (a GRPO group): prefill it once
    uniq = prompts[::k]
    width = max(len(p) for p in uniq)
    ids = torch.full((len(uniq), width), pad, dtype=torch.long)
    mask = torch.zeros((len(uniq), width), dtype=torch.long)
    for r, p in enumerate(uniq):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(
        min=0), use_cache=True)
    cache, logits = output_cache(out), out.logits[:, -1, :].float()
    if k > 1:  # as the hf engine does: repeat the prefilled cache, not the prefill
        cache.batch_repeat_interleave(k)
        logits, mask = logits.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    gens = [torch.Generator(device=dev).manual_seed(s) for s in
            (seeds if seeds is not None else [cfg.seed + r for r in range(b)])]
    emb = model.get_input_embeddings()
    tokens: list[list[int]] = [[] for _ in range(b)]
    mixes: list[list[torch.Tensor]] = [[] for _ in range(b)]
    thinking: list[list[bool]] = [[] for _ in range(b)]
    done = [False] * b
    shares: list[float] = []
    lps: list[list[float]] = [[] for _ in range(b)]
    answered = [False] * b
    closed = gate.force_a == 1.0
    for step in range(cfg.max_new_tokens):
        nxt, lp = HFEngine._pick(logits, gens, cfg)[:2]
        probs = None if gate.force_a == 1.0 else (
            filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p) if cfg.temperature > 0
            else logits).softmax(-1)
        for r in range(b):
            if not done[r]:
                t = int(nxt[r])
                lps[r].append(float(lp[r]))
                if t in stop:
                    done[r] = True
                else:
                    tokens[r].append(t)
        if all(done) or step == cfg.max_new_tokens - 1:
            break
        x = emb(nxt.view(-1, 1))
        for r in range(b):  # the marker spans a few tokens at most: decode the row's tail only
            if not done[r] and not answered[r]:
                answered[r] = marker in tok.decode(tokens[r][-TAIL:])
        think = torch.tensor([not done[r] and not answered[r] for r in range(b)], device=dev)
        if closed:  # a = 1: the token embeddings as they are, no mix to compute
            h = torch.zeros_like(x)
        else:
            h = mixed_embedding(probs, emb.weight)[:, None]
            mixed, a = gate(x.float(), h)
            x = torch.where(think[:, None, None], mixed.to(x.dtype), x)
            if think.any():
                shares.append(float(a[think].mean()))
        for r in range(b):
            if not done[r]:
                mixes[r].append(h[r, 0].cpu())
                thinking[r].append(bool(think[r]))
        mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=dev)], 1)
        out = model(inputs_embeds=x, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True)
                    - 1, use_cache=True, **cache_kwargs(model, cache))
        cache, logits = output_cache(out), out.logits[:, -1, :].float()
    d = emb.weight.shape[1]
    return HybridRollout(
        tokens, [tok.decode(t, skip_special_tokens=True) for t in tokens],
        [torch.stack(m) if m else torch.zeros(0, d) for m in mixes], thinking, done,
        sum(shares) / len(shares) if shares else float("nan"), lps)


def replay_logps(model, gate: HybridGate, prompts: list[list[int]], completions: list[list[int]],
                 mixes: list[torch.Tensor], thinking: list[list[bool]], temperature: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (at ``temperature``) of each completion token (a finished row's
    tokens then its stop token), teacher forced on the embeddings sampling fed, re-mixed
    through the current gates: (b, n) values and mask. ``mixes[r]`` and ``thinking[r]`` hold
    one entry per fed token: ``len(completions[r]) - 1``."""
    dev = next(model.parameters()).device
    emb = model.get_input_embeddings()
    rows = []
    for p, c, h, th in zip(prompts, completions, mixes, thinking):
        x = emb(torch.tensor(p + c, device=dev))
        fed = torch.arange(len(p), len(p) + len(c) - 1, device=dev)  # completion tokens fed back
        if len(fed) != len(th):
            raise ValueError(f"replay: {len(fed)} fed tokens but {len(th)} mixes")
        if len(fed) and any(th):
            sel = torch.tensor(th, device=dev)
            mixed, _ = gate(x[fed][sel].float(), h.to(dev)[sel])
            x = x.clone()
            x[fed[sel]] = mixed.to(x.dtype)
        rows.append(x)
    b, width = len(rows), max(len(r) for r in rows)
    embeds = torch.zeros(b, width, rows[0].shape[-1], device=dev, dtype=rows[0].dtype)
    mask = torch.zeros(b, width, dtype=torch.long, device=dev)
    for r, x in enumerate(rows):
        embeds[r, width - len(x):], mask[r, width - len(x):] = x, 1  # left padding
    logits = model(inputs_embeds=embeds, attention_mask=mask,
                   position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.float()
    n = max(len(c) for c in completions)
    out = torch.zeros(b, n, device=dev)
    valid = torch.zeros(b, n, device=dev)
    for r, c in enumerate(completions):
        if not c:
            continue
        lg = logits[r, width - len(c) - 1:width - 1] / temperature
        out[r, :len(c)] = lg.log_softmax(-1).gather(-1, torch.tensor(c, device=dev)[:, None])[:, 0]
        valid[r, :len(c)] = 1
    return out, valid


def gate_param_groups(model, gate: HybridGate, lr: float, lr_gate: float = 1e-4,
                      lr_lambda: float = 1e-3) -> list[dict]:
    """HRPO's optimiser groups (their ``patch_trainer_optimizer``): the model at ``lr``, W_r and
    W_i at 1e-4, Lambda at 1e-3."""
    return [{"params": list(model.parameters()), "lr": lr},
            {"params": [*gate.gate_r.parameters(), *gate.gate_i.parameters()], "lr": lr_gate},
            {"params": [gate.Lambda], "lr": lr_lambda}]


@dataclass
class HybridConfig:
    """A hybrid model's settings (``gated=False``: a forced to 1, plain GRPO's model)."""

    marker: str = "###"
    r_min: float = 0.99
    r_max: float = 0.999
    gated: bool = True

    def to_dict(self) -> dict:
        return {"marker": self.marker, "r_min": self.r_min, "r_max": self.r_max,
                "gated": self.gated}

    @classmethod
    def from_dict(cls, d: dict) -> "HybridConfig":
        return cls(**{k: d[k] for k in ("marker", "r_min", "r_max", "gated") if k in d})


class HybridModel(nn.Module):
    """A causal LM with HRPO's gate (``base`` and ``gate`` are its two state-dict parts)."""

    def __init__(self, base, tok, cfg: HybridConfig) -> None:
        super().__init__()
        self.base, self.tok, self.cfg = base, tok, cfg
        self.gate = HybridGate(base.config.hidden_size, cfg.r_min, cfg.r_max,
                               force_a=None if cfg.gated else 1.0)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], cfg: SamplingConfig,
                 seeds: list[int] | None = None) -> HybridRollout:
        """:func:`hybrid_sample` with this model's gate and marker."""
        return hybrid_sample(self.base, self.tok, self.gate, prompts, cfg, self.cfg.marker, seeds)
