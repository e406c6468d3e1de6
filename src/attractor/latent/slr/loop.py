"""``LatentLoop``: continuous thoughts over any Hugging Face causal LM (Stable Latent Reasoning).

After the question, each thought feeds the last-layer hidden state -- taken *after* the final
norm, as Coconut does (``last_hidden_state`` of the decoder) -- back as the next input embedding.
Thoughts run on the KV cache, so each costs one single-position forward pass. Questions of
different lengths share a batch (left padding); a question that halts early stops adding
positions (its later thought slots are masked out of attention), so batching never changes an
answer. After the thoughts, ``cfg.end_marker`` is fed and the answer is decoded greedily, also on
the cache.

With ``feedback="soft"`` a thought is instead the logit lens's probability-weighted mixture of
token embeddings (Soft Thinking / CoT2): a training-free continuous thought.

Stabilisers (see :mod:`attractor.latent.slr.stabilisers`), applied to the state ``h_t`` before it is
fed back as thought ``t + 1``: loop residual (``h_t = f(h_{t-1}) + alpha * h_0`` or
``+ alpha * h_{t-1}``), norm matching to the token-embedding norm, timestep embedding; loop-wise
LoRA runs iteration t through its own adapter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from attractor.errors import ConfigError
from attractor.latent.slr.config import LoopConfig
from attractor.latent.slr.stabilisers import TimestepEmbedding, embedding_norm, install_loop_lora
from attractor.models.kv_cache import cache_kwargs, output_cache


@dataclass
class ThoughtRun:
    """The state after the thoughts of a batch (cache ready for the answer)."""

    cache: object
    mask: torch.Tensor
    iterations: torch.Tensor          # thoughts used per row
    final_change: torch.Tensor        # ||h_T - h_{T-1}|| / ||h_T|| per row (nan: no thought)
    states: list[torch.Tensor] = field(default_factory=list)   # h_0 .. h_T, (batch, d) each
    passes: int = 0                   # forward passes of the batch so far


@dataclass
class LoopOutput:
    """What :meth:`LatentLoop.generate` returns per question."""

    texts: list[str]
    token_ids: list[list[int]]
    iterations: list[int]
    final_change: list[float]
    forward_passes: list[int]
    states: list[torch.Tensor]        # (T + 1, d) per question: h_0 and each thought


class LatentLoop(nn.Module):
    """Continuous-thought loop with switchable stabilisers around ``base`` (a causal LM)."""

    def __init__(self, base: nn.Module, tokenizer, cfg: LoopConfig) -> None:
        super().__init__()
        self.base, self.tok, self.cfg = base, tokenizer, cfg
        dim = base.config.hidden_size
        self.timestep = (TimestepEmbedding(cfg.timestep, cfg.timestep_mode, cfg.max_thoughts, dim)
                         if cfg.timestep != "none" else None)
        self._loras = (install_loop_lora(base, cfg.lora_targets, cfg.max_thoughts, cfg.lora_rank,
                                         cfg.lora_alpha) if cfg.lora_rank else [])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.end_ids = tokenizer(cfg.end_marker, add_special_tokens=False)["input_ids"] \
            if cfg.end_marker else []
        halt = tokenizer(cfg.halt_token, add_special_tokens=False)["input_ids"]
        self.halt_id = halt[0] if halt else -1
        eos = tokenizer.eos_token_id
        self.stop_ids = {eos} if isinstance(eos, int) else set(eos or [])
        # (thought number t, 1-based, input (batch, d)) -> the input fed instead: see
        # named hooks on each thought's input, applied in order (latent.interventions adds and
        # removes them together, as TransformerLens's run_with_hooks does)
        self.hooks: list[tuple[str, Callable[[int, torch.Tensor], torch.Tensor]]] = []

    # -- pieces ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def _set_step(self, t: int | None) -> None:
        for m in self._loras:
            m.step = t

    def _forward(self, embeds: torch.Tensor, mask: torch.Tensor, cache):
        return decoder_forward(self.base, embeds, mask, cache)

    def logit_lens(self, h: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the LM head applied to states ``h`` (..., d)."""
        return self.base.get_output_embeddings()(h).float().log_softmax(-1)

    def feed(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """The input embedding of thought ``t`` (0-based) made from state ``h``."""
        x = h
        if self.cfg.feedback == "soft":
            probs = (self.base.get_output_embeddings()(h).float()
                     / self.cfg.soft_temperature).softmax(-1)
            x = (probs @ self.base.get_input_embeddings().weight.float()).to(h.dtype)
        if self.cfg.norm_match:
            target = embedding_norm(self.base.get_input_embeddings()).to(x.dtype)
            x = x * (target / x.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        if self.timestep is not None:
            x = self.timestep(x, t)
        for _, hook in self.hooks:
            x = hook(t + 1, x)  # hooks number thoughts from 1, as the tables
        return x

    # -- the loop ----------------------------------------------------------------------------
    def think(self, prompts: list[list[int]], n_thoughts: list[int] | None = None,
              adaptive: bool | None = None) -> ThoughtRun:
        """Prefill ``prompts`` and run the thoughts: ``n_thoughts[i]`` for row i (training
        stages), else ``cfg.max_thoughts`` with the configured halting."""
        cfg, dev = self.cfg, self.device
        adaptive = (cfg.halting != "fixed") if adaptive is None else adaptive
        if adaptive and cfg.halting == "fixed":
            raise ConfigError("adaptive halting needs the loop's `halting` to be state, kl or "
                              "token, not fixed")
        b = len(prompts)
        width = max(len(p) for p in prompts)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((b, width), dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, device=dev)
            mask[i, width - len(p):] = 1
        self._set_step(None)
        hs, cache = self._forward(self.base.get_input_embeddings()(ids), mask, None)
        h0 = hs[:, -1]
        h = h0
        limit = torch.tensor(n_thoughts if n_thoughts is not None else [cfg.max_thoughts] * b,
                             device=dev)
        active = torch.ones(b, dtype=torch.bool, device=dev)
        iters = torch.zeros(b, dtype=torch.long, device=dev)
        change = torch.full((b,), float("nan"), device=dev)
        states, passes = [h0], 1
        prev_lens = self.logit_lens(h0) if adaptive and cfg.halting == "kl" else None
        for t in range(int(limit.max().item()) if b else 0):
            live = active & (t < limit)
            if not bool(live.any()):
                break
            mask = torch.cat([mask, live[:, None].long()], dim=1)
            self._set_step(t)
            out, cache = self._forward(self.feed(h, t)[:, None], mask, cache)
            self._set_step(None)
            passes += 1
            new = out[:, -1]
            if cfg.residual == "h0":
                new = new + cfg.residual_alpha * h0
            elif cfg.residual == "prev":
                new = new + cfg.residual_alpha * h
            rel = ((new - h).norm(dim=-1) / new.norm(dim=-1).clamp_min(1e-8)).detach()
            keep = live[:, None]
            h = torch.where(keep, new, h)
            iters = iters + live.long()
            change = torch.where(live, rel.to(change.dtype), change)
            if adaptive:
                if cfg.halting == "state":
                    crit = rel
                elif cfg.halting == "token":
                    top = self.base.get_output_embeddings()(new.detach()).argmax(-1)
                    crit = torch.where(top == self.halt_id, 0.0, float("inf"))
                else:
                    lens = self.logit_lens(new.detach())
                    crit = (lens.exp() * (lens - prev_lens)).sum(-1)
                    prev_lens = torch.where(keep, lens, prev_lens)
                active = active & ~(live & (crit < cfg.epsilon))
            states.append(h)
        return ThoughtRun(cache, mask, iters, change, states, passes)

    def loss(self, prompts: list[list[int]], n_thoughts: list[int],
             targets: list[list[int]], lens_targets: list[list[int]] | None = None,
             lens_weight: float = 0.0) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``end_marker + target`` after ``n_thoughts[i]``
        thoughts (gradients flow through every thought). With ``lens_weight`` > 0, plus that
        times the cross-entropy of each fed-back state's logit lens against ``lens_targets[i]``
        (one token id per thought, -100 for none): the thoughts are told which step they
        stand for instead of finding it through the answer's loss alone."""
        run = self.think(prompts, n_thoughts, adaptive=False)
        aux = None
        if lens_weight > 0 and lens_targets is not None and run.states[:-1]:
            fed = torch.stack(run.states[:-1], dim=1)  # state s is fed as thought s
            want = torch.full(fed.shape[:2], -100, dtype=torch.long, device=self.device)
            for i, row in enumerate(lens_targets):
                row = row[:fed.shape[1]]
                want[i, :len(row)] = torch.tensor(row, dtype=torch.long, device=self.device)
            if bool((want != -100).any()):
                lens_logits = self.base.get_output_embeddings()(fed).float()
                aux = nn.functional.cross_entropy(lens_logits.reshape(-1, lens_logits.shape[-1]),
                                                  want.reshape(-1), ignore_index=-100)
        logits, labels = self._answer_logits(run, targets)
        main = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           labels.reshape(-1), ignore_index=-100)
        return main if aux is None else main + lens_weight * aux

    def _answer_logits(self, run: ThoughtRun, targets: list[list[int]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (b, L, vocab) predicting ``end_marker + target`` after ``run``
        and their labels (-100 on the marker and padding)."""
        seqs = [self.end_ids + t for t in targets]
        width = max(len(s) for s in seqs)
        dev = self.device
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long, device=dev)
        smask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        # the last thought (or prompt) position predicts the first token of ``seqs``
        first_logits = self.base.get_output_embeddings()(run.states[-1])
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, device=dev)
            smask[i, :len(s)] = 1
            labels[i, :len(s)] = torch.tensor(s, device=dev)
            labels[i, :len(self.end_ids)] = -100
        mask = torch.cat([run.mask, smask], dim=1)
        hs, _ = self._forward(self.base.get_input_embeddings()(ids), mask, run.cache)
        logits = self.base.get_output_embeddings()(hs).float()
        return torch.cat([first_logits.float()[:, None], logits[:, :-1]], dim=1), labels

    def answer_logprobs(self, prompts: list[list[int]], n_thoughts: list[int],
                        targets: list[list[int]]) -> tuple[torch.Tensor, list[int]]:
        """Summed log-probability of each ``targets[i]`` after ``n_thoughts[i]`` thoughts and
        the end marker, shape (b,), differentiable through the thoughts (LatentSeek's policy),
        and the forward passes each row took (prefill, its thoughts, one teacher-forced pass)."""
        run = self.think(prompts, n_thoughts, adaptive=False)
        logits, labels = self._answer_logits(run, targets)
        logp = logits.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None])[..., 0]
        passes = (run.iterations + 2).tolist()
        return (logp * (labels != -100)).sum(-1), passes

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int = 32,
                 n_thoughts: int | None = None, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> LoopOutput:
        """Thoughts, then ``end_marker``, then decoding of the answer, batched: greedy, or
        sampled at ``temperature`` > 0 (from the CPU ``generator``). ``n_thoughts`` fixes the
        thought count (a curriculum stage's), else the configured halting decides."""
        run = (self.think(prompts) if n_thoughts is None
               else self.think(prompts, [n_thoughts] * len(prompts), adaptive=False))
        b, dev = len(prompts), self.device
        passes = 1 + run.iterations.clone()
        cache, mask = run.cache, run.mask
        if self.end_ids:
            ids = torch.tensor([self.end_ids] * b, device=dev)
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
            hs, cache = self._forward(self.base.get_input_embeddings()(ids), mask, cache)
            passes += 1
            last = hs[:, -1]
        else:
            last = run.states[-1]
        out, decode_passes = decode_tokens(self.base, last, mask, cache, max_new_tokens,
                                           self.stop_ids, temperature, generator)
        passes += decode_passes
        states = torch.stack(run.states, dim=1)  # (b, T + 1, d)
        return LoopOutput(
            texts=self.tok.batch_decode(out, skip_special_tokens=True), token_ids=out,
            iterations=run.iterations.tolist(), final_change=run.final_change.tolist(),
            forward_passes=passes.tolist(),
            states=[states[i, : 1 + int(run.iterations[i])].float().cpu() for i in range(b)])


def decoder_forward(base: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, cache
                    ) -> tuple[torch.Tensor, object]:
    """One forward of ``base``'s decoder over ``embeds`` (b, n, d) on the KV ``cache``, with
    positions counted from ``mask`` (left padding and masked-out slots do not advance them):
    the last-layer states after the final norm, and the cache."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1]:]
    decoder = base.get_decoder()
    out = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                  use_cache=True, **cache_kwargs(decoder, cache))
    return out.last_hidden_state, output_cache(out)


@torch.no_grad()
def decode_tokens(base: nn.Module, last: torch.Tensor, mask: torch.Tensor, cache,
                  max_new_tokens: int, stop_ids: set[int], temperature: float = 0.0,
                  generator: torch.Generator | None = None
                  ) -> tuple[list[list[int]], torch.Tensor]:
    """Decode up to ``max_new_tokens`` tokens per row after the states ``last`` (b, d) on the
    cache, greedily or sampled at ``temperature`` (from the CPU ``generator``); a row stops at
    a token of ``stop_ids`` (not kept). Returns the tokens and the passes each row took."""
    b, dev = last.shape[0], last.device
    out: list[list[int]] = [[] for _ in range(b)]
    passes = torch.zeros(b, dtype=torch.long, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    for _ in range(max_new_tokens):
        logits = base.get_output_embeddings()(last).float()
        if temperature > 0:
            probs = (logits / temperature).softmax(-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0].to(dev)
        else:
            nxt = logits.argmax(-1)
        for i in range(b):
            if not done[i]:
                if int(nxt[i]) in stop_ids:
                    done[i] = True
                else:
                    out[i].append(int(nxt[i]))
        if bool(done.all()):
            break
        mask = torch.cat([mask, (~done)[:, None].long()], dim=1)
        hs, cache = decoder_forward(base, base.get_input_embeddings()(nxt[:, None]), mask, cache)
        passes += (~done).long()
        last = hs[:, -1]
    return out, passes
