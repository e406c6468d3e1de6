"""``attractor latent inspect`` on a CoLaR checkpoint: do the answers depend on what the latents
hold? Per compression factor c: greedy accuracy with the model's own latents, and with every
latent replaced by a random direction of the same norm (seeded Gaussian, per latent, before it is
fed). If the latents carry the reasoning, the second falls toward the No-CoT accuracy (the answer
straight after the question), which is the third column."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from attractor.latent.colar.model import CoLaR


def same_norm_noise(seed: int) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A latent hook: each fed latent (b, d) becomes a seeded random direction of its norm."""
    gen = torch.Generator().manual_seed(seed)

    def hook(t: int, x: torch.Tensor) -> torch.Tensor:
        r = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
        return r * (x.norm(dim=-1, keepdim=True) / r.norm(dim=-1, keepdim=True))
    return hook


@torch.no_grad()
def random_latent_table(colar: CoLaR, problems, prompts: list[list[int]],
                        compressions: list[int], no_cot_accuracy: float, seed: int = 0,
                        max_new_tokens: int = 32, on_step: Callable[[], None] | None = None
                        ) -> pd.DataFrame:
    """One row per c: accuracy with the model's latents and with same-norm random ones, the
    mean number of latents of each, and ``no_cot_accuracy`` for reference."""
    from attractor.grading.grade import correct_answers
    from attractor.latent.evaluate import eval_colar

    rows = []
    for c in compressions:
        own = eval_colar(colar, prompts, c, max_new_tokens)
        (on_step or (lambda: None))()
        colar.hooks.append(same_norm_noise(seed + c))
        try:
            rand = eval_colar(colar, prompts, c, max_new_tokens)
        finally:
            colar.hooks.pop()
        (on_step or (lambda: None))()
        acc = [sum(correct_answers(r["texts"], problems)) / len(problems) for r in (own, rand)]
        rows.append({"compression": c, "accuracy": acc[0], "accuracy_random_latents": acc[1],
                     "no_cot_accuracy": no_cot_accuracy, "latents": own["iterations"],
                     "latents_random": rand["iterations"]})
    return pd.DataFrame(rows)
