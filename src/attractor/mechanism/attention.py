"""Per-head attention features of a rollout, read from eager attention weights in a forward hook
(one layer's weights at a time, never all layers at once).

For each layer and head:
    entropy   -sum_k w_k log w_k over the keys the query sees (nats), averaged over the
              completion tokens as queries;
    lookback  Lookback Lens' ratio (Chuang et al. 2024, voidism/Lookback-Lens
              ``step01_extract_attns.py``), as the reference bounds it: the queries are the
              positions that predict each new token (the last prompt token through the
              second-to-last completion token: the reference reads ``attentions[i][l][0, :, -1]``
              at generation step i); the context is the prompt *without* its response header
              (the chat template's assistant header here, their ``\n#Answer#:``), which counts
              as new tokens with the completion up to and including the query; mean attention on
              the context over (that + mean attention on the new tokens), averaged over queries;
and on ProsQA, over the rollout's correct proof steps (:mod:`attractor.mechanism.prosqa_steps`):
    gold_mass the attention mass on the gold sentences' tokens at the step's query;
    gold_top  whether the most-attended sentence (by mass) is a gold one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from attractor.mechanism.forward import pad_batch
from attractor.mechanism.modules import DecoderModules
from attractor.mechanism.prosqa_steps import Step


@dataclass
class AttnItem:
    """One rollout: ids, prompt length, and (ProsQA) its proof steps and sentence spans."""

    ids: list[int]
    prompt_len: int
    steps: list[Step] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    header_len: int = 0      # the prompt's last tokens that are the response header


def _features(w: torch.Tensor, it: AttnItem) -> dict[str, np.ndarray]:
    """Features (H,) of one rollout from its weights ``w`` (H, T, T), T its own length."""
    p, t = it.prompt_len, len(it.ids)
    q = w[:, p:t, :t].float()                                   # (H, C, T)
    ent = -(q * torch.log(q.clamp_min(1e-30))).sum(-1)          # 0 log 0 = 0
    c = p - it.header_len                                       # context keys: [0, c)
    lq = w[:, p - 1:t - 1, :t].float()                          # queries predicting new tokens
    ctx = lq[..., :c].mean(-1)
    n_new = torch.arange(p - c, t - c, device=w.device, dtype=q.dtype)   # keys c .. query
    new = lq[..., c:].sum(-1) / n_new
    look = ctx / (ctx + new)
    # a query with no new token yet (a prompt without a response header: the first query)
    # has no ratio; the mean is over the queries that have one
    out = {"entropy": ent.mean(-1), "lookback": look[..., n_new > 0].mean(-1)}
    if it.steps and it.spans:
        rows = w[:, [s.query for s in it.steps], :].float()     # (H, S, T)
        mass = torch.stack([rows[..., a:b].sum(-1) for a, b in it.spans], -1)  # (H, S, n_sent)
        gold = torch.zeros(mass.shape[1:], dtype=torch.bool, device=w.device)  # (S, n_sent)
        for j, s in enumerate(it.steps):
            gold[j, list(s.gold)] = True
        out["gold_mass"] = (mass * gold).sum(-1).mean(-1)
        top = mass.argmax(-1)                                     # (H, S)
        out["gold_top"] = gold.gather(-1, top.T).T.float().mean(-1)
    return {k: v.cpu().numpy() for k, v in out.items()}


@torch.inference_mode()
def attention_batch(mods: DecoderModules, items: list[AttnItem], pad_id: int
                    ) -> list[dict[str, np.ndarray]]:
    """Per item: {feature: (L, H)} (gold features only for items with steps)."""
    dev = next(mods.lm_head.parameters()).device
    ids = pad_batch([it.ids for it in items], pad_id, dev)
    per_layer: list[list[dict[str, np.ndarray]]] = []

    def hook(module, args, output):
        if not isinstance(output, tuple) or len(output) < 2 or output[1] is None:
            raise RuntimeError("the attention returned no weights; load the model with "
                               "attn_implementation='eager'")
        w = output[1]
        per_layer.append([_features(w[i], it) for i, it in enumerate(items)])

    handles = [a.register_forward_hook(hook) for a in mods.attn]
    try:
        mods.base(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    out = []
    for i in range(len(items)):
        keys = per_layer[0][i].keys()
        out.append({k: np.stack([per_layer[l][i][k] for l in range(len(per_layer))])
                    for k in keys})
    return out


def response_header_len(tokenizer, chat_template: bool) -> int:
    """Tokens the chat template appends after the user's turn to open the assistant's (its
    generation prompt), 0 for a plain prompt: the response header Lookback Lens counts as new
    tokens."""
    from attractor.tasks.prompts import uses_chat

    if not uses_chat(tokenizer, chat_template):
        return 0
    msgs = [{"role": "user", "content": "x"}]
    with_header = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    without = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    if not with_header.startswith(without):
        return 0
    n = len(tokenizer(with_header, add_special_tokens=False)["input_ids"])
    return n - len(tokenizer(without, add_special_tokens=False)["input_ids"])
