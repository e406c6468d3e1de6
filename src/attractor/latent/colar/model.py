"""Compressed Latent Reasoning (CoLaR; Tan et al. 2025, arXiv 2505.16552; code
xiaomi-research/colar, ``src/models/colar.py`` and ``src/modules/projector.py``) over any Hugging
Face causal LM.

Training (one teacher-forced pass, no sequential thoughts): the question ends with the
compression named in words (``(Thinking speed: c)``) and the thinking marker; the chain of
thought's tokens are merged in groups of c consecutive embeddings, each group's embeddings summed
and divided by the square root of its size; the answer follows the marker. The LM loss reads one
random token of each next group (and the answer's tokens); a latent head (an MLP giving a mean
and a log-std per dimension) predicts the next compressed embedding, divided by the embedding
std: the mean-squared error of a reparameterised draw from it against that target (their
released config, ``embed_modeling_loss: mse``), which trains the log-std too. c is
drawn from 1..C for each batch.

Inference: after the question, each latent is a draw from the head's Normal (CoLaR samples at
temperature 1; temperature 0 takes its mean) times the embedding std, fed back as the next input
on the KV cache (one single-position pass per latent); thinking ends when the LM head's top token
at the last latent is the marker (or after ``max_latents``); then the marker and the answer are
decoded.

Deliberate differences, stated in docs/latent-reasoning.md: the embedding std is measured on the base model
(the std of its input-embedding matrix) where CoLaR keeps a table per model; the end of thinking
and the answer are greedy where CoLaR samples them (``eol_temperature`` samples the first); the
base is fine-tuned whole where CoLaR trains a LoRA. The marker is the task's answer marker
``###``, which is also CoLaR's (their ``thinking_separator``).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from attractor.errors import ConfigError
from attractor.latent.slr.loop import decode_tokens, decoder_forward
from attractor.tasks.problem import ANSWER_MARK

SPEED_TEMPLATE = "(Thinking speed: {})"  # CoLaR's own wording of the compression factor


@dataclass
class ColarConfig:
    """A CoLaR model's shape and inference options (stored in the checkpoint's ``loop.json``)."""

    max_compression: int = 5          # training draws c from 1..max_compression
    head_size: int = 0                # the latent head's inner width (0: the model's hidden size)
    embeds_std: float = 0.0           # the base's input-embedding std (measured when 0)
    max_latents: int = 32             # the most latents before the answer is forced
    speed_template: str = SPEED_TEMPLATE
    marker: str = " " + ANSWER_MARK   # starts and ends thinking; the answer follows it

    def __post_init__(self) -> None:
        if self.max_compression < 1:
            raise ConfigError(f"compression must be >= 1, got {self.max_compression}")
        if self.max_latents < 1:
            raise ConfigError(f"max_latents must be >= 1, got {self.max_latents}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ColarConfig":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        bad = sorted(set(d) - set(cls.__dataclass_fields__))
        if bad:
            raise ConfigError(f"colar config: unknown fields {', '.join(bad)}")
        return cls(**d)


class LatentHead(nn.Module):
    """CoLaR's latent policy: state -> Normal(mean, exp(log_std) * temperature) over the next
    compressed embedding, in units of the embedding std."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, inner), nn.GELU(), nn.Linear(inner, inner),
                                nn.LayerNorm(inner))
        self.mean = nn.Linear(inner, dim)
        self.log_std = nn.Linear(inner, dim)

    def forward(self, h: torch.Tensor, temperature: float = 1.0) -> torch.distributions.Normal:
        x = self.fc(h)
        return torch.distributions.Normal(self.mean(x), self.log_std(x).exp() * temperature)


@dataclass
class ColarOutput:
    """What :meth:`CoLaR.generate` returns per question."""

    texts: list[str]
    latents: list[int]              # latents used
    forward_passes: list[int]       # prefill, latents, marker, answer tokens
    states: list[torch.Tensor]      # (latents + 1, d): the state after the question and each latent
    fed: list[torch.Tensor]         # (latents, d): the latents fed (CoLaR's RL actions)
    answer_ids: list[list[int]]     # the answer's tokens after the marker (end of text excluded)
    stopped: list[bool]             # the answer ended with the end of text (not the budget)


def compress(embeds: torch.Tensor, c: int) -> torch.Tensor:
    """Groups of ``c`` consecutive rows of ``embeds`` (n, d) merged as sum / sqrt(group size)
    (the last group may be shorter): (ceil(n / c), d)."""
    groups = torch.split(embeds, c, dim=0)
    return torch.stack([g.sum(0) / len(g) ** 0.5 for g in groups]) if groups else embeds[:0]


class CoLaR(nn.Module):
    """A causal LM with CoLaR's latent head."""

    def __init__(self, base: nn.Module, tokenizer, cfg: ColarConfig) -> None:
        super().__init__()
        self.base, self.tok, self.cfg = base, tokenizer, cfg
        dim = base.config.hidden_size
        self.head = LatentHead(dim, cfg.head_size or dim)
        if not cfg.embeds_std:
            cfg.embeds_std = float(base.get_input_embeddings().weight.detach().float().std())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        marker = tokenizer(cfg.marker, add_special_tokens=False)["input_ids"]
        if len(marker) != 1:
            raise ConfigError(f"colar marker {cfg.marker!r} must be one token of this tokenizer, "
                              f"got {len(marker)}")
        self.marker_id = marker[0]
        eos = tokenizer.eos_token_id
        self.stop_ids = {eos} if isinstance(eos, int) else set(eos or [])
        # (latent number, 1-based; latents (b, d)) -> the latents fed instead (inspect's checks)
        self.hooks: list[Callable[[int, torch.Tensor], torch.Tensor]] = []

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def question_ids(self, prompt: list[int], c: int) -> list[int]:
        """The prompt, the compression named in words, then the marker that starts thinking."""
        speed = self.tok(" " + self.cfg.speed_template.format(c),
                         add_special_tokens=False)["input_ids"]
        return list(prompt) + speed + [self.marker_id]

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.base.get_input_embeddings()(torch.tensor(ids, dtype=torch.long,
                                                             device=self.device))

    # -- training ------------------------------------------------------------------------------
    def loss(self, prompts: list[list[int]], steps: list[list[int]], answers: list[list[int]],
             c: int, rng: random.Random) -> dict[str, torch.Tensor]:
        """CoLaR's training loss at compression ``c`` for a batch: ``steps[i]`` are the chain of
        thought's token ids, ``answers[i]`` the ids after it (marker, answer, end of text).
        Returns ``total`` = ``ce`` + ``latent``."""
        rows, labels, targets = [], [], []
        for prompt, step, answer in zip(prompts, steps, answers):
            q = self.question_ids(prompt, c)
            groups = [step[j:j + c] for j in range(0, len(step), c)]
            comp = compress(self._embed(step), c) if step else self._embed([])
            emb_a = self._embed(answer)
            rows.append(torch.cat([self._embed(q), comp, emb_a]))
            # labels[k] is what position k predicts: the marker after the question (its last
            # prompt position), one random token of each next group, then the answer
            nxt = [rng.choice(g) for g in groups] + [answer[0]]
            lab = [-100] * (len(q) - 2) + [self.marker_id] + nxt + list(answer[1:]) + [-100]
            labels.append(lab)
            # the latent head at the marker and at each group predicts the next input embedding
            targets.append(torch.cat([comp, emb_a[:1]]))
        width = max(len(r) for r in rows)
        b, d, dev = len(rows), rows[0].shape[-1], self.device
        embeds = torch.zeros(b, width, d, device=dev, dtype=rows[0].dtype)
        mask = torch.zeros(b, width, dtype=torch.long, device=dev)
        lab = torch.full((b, width), -100, dtype=torch.long, device=dev)
        for i, (r, y) in enumerate(zip(rows, labels)):
            embeds[i, :len(r)], mask[i, :len(r)] = r, 1
            lab[i, :len(y)] = torch.tensor(y, device=dev)
        hs, _ = decoder_forward(self.base, embeds, mask, None)
        logits = self.base.get_output_embeddings()(hs).float()
        ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                                         ignore_index=-100)
        sq = []
        for i, (prompt, tgt) in enumerate(zip(prompts, targets)):
            start = len(self.question_ids(prompt, c)) - 1  # the marker's position
            # CoLaR's mse: a reparameterised draw of the head against the target, so the
            # head's log-std learns too (it is what inference samples with)
            pred = self.head(hs[i, start:start + len(tgt)].float()).rsample()
            sq.append(((pred - tgt.detach().float() / self.cfg.embeds_std) ** 2).mean(-1))
        latent = torch.cat(sq).mean()
        return {"total": ce + latent, "ce": ce.detach(), "latent": latent.detach()}

    # -- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: list[list[int]], c: int, max_new_tokens: int = 32,
                 latent_temperature: float = 0.0, eol_temperature: float = 0.0,
                 seeds: list[int] | None = None, n_latents: int | None = None,
                 answer_temperature: float = 0.0) -> ColarOutput:
        """Latents at compression ``c`` until the LM head names the marker, then the marker and
        the answer (greedy). ``latent_temperature`` > 0 samples each latent from the head's
        Normal (CoLaR samples at 1), ``eol_temperature`` > 0 samples the end-of-thinking
        token; the draws of row i come from its own CPU generator seeded ``seeds[i]`` (default
        i), so a row's latents do not depend on the rest of its batch. ``n_latents``: exactly
        that many latents, the marker ignored (CoLaR's ``fixed_length_latent_generate``).
        ``answer_temperature`` > 0 samples the answer (CoLaR's RL rollouts), from a generator
        seeded by the first seed. Texts start with the marker."""
        if c < 1:
            raise ConfigError(f"compression must be >= 1, got {c}")
        dev = self.device
        gens = [torch.Generator().manual_seed(s) for s in (seeds or range(len(prompts)))]
        qs = [self.question_ids(p, c) for p in prompts]
        b, width = len(qs), max(len(q) for q in qs)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((b, width), dtype=torch.long, device=dev)
        for i, q in enumerate(qs):
            ids[i, width - len(q):] = torch.tensor(q, device=dev)
            mask[i, width - len(q):] = 1
        hs, cache = decoder_forward(self.base, self.base.get_input_embeddings()(ids), mask, None)
        h = hs[:, -1]
        states, passes = [h], torch.ones(b, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        used = torch.zeros(b, dtype=torch.long, device=dev)
        fed = []
        for t in range(n_latents if n_latents is not None else self.cfg.max_latents):
            dist = self.head(h.float(), temperature=max(latent_temperature, 1e-9))
            z = dist.mean
            if latent_temperature > 0:
                noise = torch.stack([torch.randn(z.shape[-1], generator=g) for g in gens])
                z = z + dist.stddev * noise.to(dev)
            x = (z * self.cfg.embeds_std).to(h.dtype)
            for hook in self.hooks:
                x = hook(t + 1, x)
            fed.append(x)
            live = ~done
            mask = torch.cat([mask, live[:, None].long()], dim=1)
            out, cache = decoder_forward(self.base, x[:, None], mask, cache)
            passes += live.long()
            used += live.long()
            h = torch.where(live[:, None], out[:, -1], h)
            states.append(h)
            logits = self.base.get_output_embeddings()(h).float()
            if eol_temperature > 0:
                probs = (logits / eol_temperature).softmax(-1).cpu()
                tok = torch.stack([torch.multinomial(p, 1, generator=g)[0]
                                   for p, g in zip(probs, gens)]).to(dev)
            else:
                tok = logits.argmax(-1)
            if n_latents is None:
                done = done | (tok == self.marker_id)
            if bool(done.all()):
                break
        mark = torch.full((b, 1), self.marker_id, dtype=torch.long, device=dev)
        mask = torch.cat([mask, torch.ones_like(mark)], dim=1)
        hs, cache = decoder_forward(self.base, self.base.get_input_embeddings()(mark), mask, cache)
        passes += 1
        answer_gen = torch.Generator().manual_seed((seeds or [0])[0] + 7919)
        toks, decode_passes = decode_tokens(self.base, hs[:, -1], mask, cache, max_new_tokens,
                                            self.stop_ids, answer_temperature, answer_gen)
        passes += decode_passes
        stacked = torch.stack(states, dim=1)
        lat = torch.stack(fed, dim=1) if fed else torch.zeros(b, 0, stacked.shape[-1], device=dev)
        # a row shorter than the budget stopped on an end-of-text token
        return ColarOutput(
            texts=[ANSWER_MARK + t for t in self.tok.batch_decode(toks, skip_special_tokens=True)],
            latents=used.tolist(), forward_passes=passes.tolist(),
            states=[stacked[i, :1 + int(used[i])].float().cpu() for i in range(b)],
            fed=[lat[i, :int(used[i])] for i in range(b)], answer_ids=toks,
            stopped=[len(t) < max_new_tokens for t in toks])
