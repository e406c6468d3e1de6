"""Activation patching between rollouts of one question (after Meng et al. 2022's causal
tracing, and the interchange interventions of TransformerLens/nnsight users).

A *base* rollout is teacher-forced while the residual stream entering layer l (l = 0 .. L; l = L
is the final norm's input) at one position t is replaced by a *source* run's state; one batch row
per (layer, position). The read-out is the answer logit difference at the base rollout's decisive
position, LD = logit(correct answer's decisive token) - logit(wrong answer's), and

    effect = (LD_patched - LD_base) / (LD_source - LD_base)

(1: the patch alone carries the source's answer; 0: no effect). ``flipped``: the patched LD has
the source's sign and the base's differs. Directions: ``c->w`` (correct into wrong), ``w->c``,
and ``noise``: the source is the correct rollout itself, the base the same rollout with every
prompt token embedding corrupted by Gaussian noise of 3 x the embedding matrix's standard
deviation (Meng et al.'s 3 sigma, sigma taken over the embedding matrix rather than over a
corpus's subject tokens), one seeded draw per question.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from attractor.mechanism.forward import lens_logits, recorded_forward
from attractor.mechanism.modules import DecoderModules

NOISE_SIGMAS = 3.0


@dataclass
class Site:
    """One patched position: its label, its index in the base run and in the source run."""

    label: str
    base: int
    source: int


def _ld(logits: torch.Tensor, tok_c: int, tok_w: int) -> torch.Tensor:
    return logits[..., tok_c] - logits[..., tok_w]


@torch.inference_mode()
def source_states(mods: DecoderModules, ids: list[int], positions: list[int],
                  inputs_embeds: torch.Tensor | None = None):
    """Residual states h_0 .. h_L of one run at ``positions`` (a Record, rows in that order)."""
    dev = next(mods.lm_head.parameters()).device
    t = torch.tensor([ids], device=dev)
    rows = torch.zeros(len(positions), dtype=torch.long, device=dev)
    pos = torch.tensor(positions, dtype=torch.long, device=dev)
    return recorded_forward(mods, t, rows, pos, inputs_embeds=inputs_embeds)


def site_patcher(n_layers: int, sites: list[Site], states):
    """One batch row per (layer, site) after an unpatched row 0, and the ``patch(l, h)`` hook
    that writes ``states.resid[l][j]`` (site j's state entering layer l) into its row at the
    site's base position: the combos, in row order from 1, and the hook."""
    combos = [(layer, j) for layer in range(n_layers) for j in range(len(sites))]
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for row, (layer, j) in enumerate(combos, start=1):
        by_layer.setdefault(layer, []).append((row, j))

    def patch(layer: int, h: torch.Tensor) -> torch.Tensor:
        todo = by_layer.get(layer)
        if not todo:
            return h
        h = h.clone()
        for row, j in todo:
            h[row, sites[j].base] = states.resid[layer][j].to(h.dtype)
        return h
    return combos, patch


@torch.inference_mode()
def patch_sweep(mods: DecoderModules, base_ids: list[int], decisive: int, sites: list[Site],
                src, src_decisive_logits: torch.Tensor, tok_c: int, tok_w: int,
                base_embeds: torch.Tensor | None = None) -> dict:
    """LD of the base run unpatched and patched at every (layer, site); ``src`` holds the
    source states at the sites' source positions (in ``sites`` order) and, last, at the
    source's decisive position (its logits are ``src_decisive_logits``)."""
    dev = next(mods.lm_head.parameters()).device
    n_l = mods.n_layers + 1
    combos, patch = site_patcher(n_l, sites, src)
    r = len(combos) + 1                                 # row 0: unpatched
    ids = torch.tensor([base_ids] * r, device=dev)
    embeds = base_embeds.expand(r, -1, -1).clone() if base_embeds is not None else None
    rows = torch.arange(r, device=dev)
    pos = torch.full((r,), decisive, dtype=torch.long, device=dev)
    rec = recorded_forward(mods, ids, rows, pos, patch=patch, inputs_embeds=embeds)
    ld = _ld(lens_logits(mods, rec.resid[-1]), tok_c, tok_w).cpu()
    ld_src = float(_ld(src_decisive_logits, tok_c, tok_w))
    ld_base = float(ld[0])
    out = []
    for (layer, j), v in zip(combos, ld[1:].tolist()):
        denom = ld_src - ld_base
        out.append({"layer": layer, "position": sites[j].label, "token_index": sites[j].base,
                    "ld_base": ld_base, "ld_source": ld_src, "ld_patched": v,
                    "effect": (v - ld_base) / denom if abs(denom) > 1e-9 else float("nan"),
                    "flipped": bool((v > 0) == (ld_src > 0) and (ld_base > 0) != (ld_src > 0))})
    return {"rows": out, "ld_base": ld_base, "ld_source": ld_src}


def noisy_embeds(mods: DecoderModules, ids: list[int], prompt_len: int, seed: int
                 ) -> torch.Tensor:
    """Input embeddings of ``ids`` with Gaussian noise (3 sigma of the embedding matrix) added
    to every prompt token, from a seeded generator."""
    dev = next(mods.lm_head.parameters()).device
    with torch.inference_mode():
        e = mods.embed(torch.tensor([ids], device=dev)).clone()
        w = mods.embed.weight
        sigma = float(w.float().std())
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((prompt_len, e.shape[-1]), generator=g) * NOISE_SIGMAS * sigma
        e[0, :prompt_len] += noise.to(e.dtype).to(dev)
    return e


# ---------------------------------------------------------------- the reference's causal trace
TRACE_DRAWS = 10    # causal_trace.py: trace_with_patch runs 1 clean + 10 corrupted rows

_PROSQA_SUBJECT = re.compile(r"Is (\S+) an? ")
_PRONTOQA_SUBJECT = re.compile(r"(?:True or false|true or false\?):?\s*(\S+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def subject_char_spans(text: str, kind: str) -> list[tuple[int, int]]:
    """Character spans of the *subject* in a prompt's text, the tokens causal tracing corrupts:
    ProsQA, the person the final question asks about ("Is Tom a ..."); ProntoQA, the person of
    the final "True or false: Max is ..." statement (their occurrence in that question only);
    math and arithmetic, every number in the text (the quantities the answer is computed from:
    a word problem has no single subject)."""
    if kind in ("prosqa", "prontoqa"):
        found = list((_PROSQA_SUBJECT if kind == "prosqa" else _PRONTOQA_SUBJECT).finditer(text))
        if not found:
            return []
        m = found[-1]
        return [(m.start(1), m.end(1))]
    return [(m.start(), m.end()) for m in _NUMBER.finditer(text)]


def subject_positions(tokenizer, prompt_ids: list[int], kind: str) -> list[int]:
    """Prompt token indices holding the subject (:func:`subject_char_spans` of the decoded
    prompt), in order; [] when the prompt names none."""
    from attractor.capture.decisive import token_holding

    text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    out: set[int] = set()
    for a, b in subject_char_spans(text, kind):
        first, last = token_holding(tokenizer, prompt_ids, a), token_holding(tokenizer, prompt_ids,
                                                                             b - 1)
        out.update(range(first, min(last, len(prompt_ids) - 1) + 1))
    return sorted(out)


def embedding_sigma(mods: DecoderModules, token_ids: list[int]) -> float:
    """causal_trace.py's collect_embedding_std: the standard deviation of every element of the
    embeddings of the given (subject) tokens, all prompts together."""
    dev = next(mods.lm_head.parameters()).device
    with torch.inference_mode():
        e = mods.embed(torch.tensor(token_ids, device=dev))
    return float(e.float().std())


@torch.inference_mode()
def causal_trace(mods: DecoderModules, ids: list[int], subject: list[int], readout: int,
                 answer: int, sites: list[Site], sigma: float, seed: int,
                 draws: int = TRACE_DRAWS) -> dict:
    """Meng et al.'s causal trace (``trace_with_patch``): ``draws`` corrupted runs, each with
    Gaussian noise of std ``3 * sigma`` added to the subject tokens' embeddings; for each
    (layer, site) the clean run's residual state entering that layer (0: the embeddings; L: the
    last residual) is restored at that site in every corrupted run, and the read-out is the
    answer token's probability at ``readout``, averaged over the corrupted runs. Returns the
    clean and corrupted probabilities and one row per (layer, site)."""
    dev = next(mods.lm_head.parameters()).device
    n_l = mods.n_layers + 1
    clean = recorded_forward(mods, torch.tensor([ids], device=dev),
                             torch.zeros(len(sites) + 1, dtype=torch.long, device=dev),
                             torch.tensor([s.base for s in sites] + [readout], device=dev))
    p_clean = float(torch.softmax(lens_logits(mods, clean.resid[-1][-1:]), -1)[0, answer])
    combos, patch = site_patcher(n_l, sites, clean)
    r = len(combos) + 1                                  # row 0: corrupted, unpatched

    base = mods.embed(torch.tensor([ids], device=dev))
    g = torch.Generator().manual_seed(seed)
    probs = torch.zeros(r)
    sub = torch.tensor(subject, dtype=torch.long, device=dev)
    for _ in range(draws):                               # each draw its own noise
        e = base.expand(r, -1, -1).clone()
        noise = torch.randn((len(subject), e.shape[-1]), generator=g) * NOISE_SIGMAS * sigma
        e[:, sub] += noise.to(e.dtype).to(dev)
        rec = recorded_forward(mods, None, torch.arange(r, device=dev),
                               torch.full((r,), readout, dtype=torch.long, device=dev),
                               patch=patch, inputs_embeds=e)
        probs += torch.softmax(lens_logits(mods, rec.resid[-1]), -1)[:, answer].cpu()
    probs /= draws
    p_low = float(probs[0])
    denom = p_clean - p_low
    rows = [{"layer": layer, "position": sites[j].label, "token_index": sites[j].base,
             "p_clean": p_clean, "p_corrupt": p_low, "p_patched": float(v),
             "indirect_effect": float(v) - p_low,
             "effect": (float(v) - p_low) / denom if abs(denom) > 1e-9 else float("nan")}
            for (layer, j), v in zip(combos, probs[1:].tolist())]
    return {"rows": rows, "p_clean": p_clean, "p_corrupt": p_low}

def site_kind(label: str) -> str:
    """prompt_last | step | decisive (steps pooled)."""
    return "step" if str(label).startswith("step:") else str(label)
