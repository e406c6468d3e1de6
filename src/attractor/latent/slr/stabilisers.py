"""The stabilisers of the latent loop: timestep embedding, loop-wise LoRA, norm matching.

Loop-wise LoRA is our own small implementation, not PEFT: one forward of the loop must run
iteration t through adapter t and iteration t+1 through adapter t+1 inside one autograd graph,
while PEFT's ``set_adapter`` makes exactly one adapter active and trainable at a time.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attractor.errors import ConfigError


def sinusoidal_table(steps: int, dim: int) -> torch.Tensor:
    """(steps, dim) sinusoidal embeddings of t = 1..steps (Transformer position encoding)."""
    t = torch.arange(1, steps + 1, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(steps, dim)
    table[:, 0::2] = torch.sin(t * freq)
    table[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return table


class TimestepEmbedding(nn.Module):
    """e_t joined to the fed-back state: added (scaled to the state's norm), or concatenated
    and projected back to d (projection initialised to the identity on the state)."""

    def __init__(self, kind: str, mode: str, steps: int, dim: int) -> None:
        super().__init__()
        self.kind, self.mode = kind, mode
        if kind == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(steps, dim) / math.sqrt(dim / 2),
                                 persistent=False)
        else:
            self.table = nn.Parameter(torch.randn(steps, dim) * 0.02)
        self.scale = nn.Parameter(torch.tensor(0.1))
        if mode == "concat":
            self.proj = nn.Linear(2 * dim, dim, bias=False)
            with torch.no_grad():
                self.proj.weight.zero_()
                self.proj.weight[:, :dim].copy_(torch.eye(dim))

    def forward(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """The state ``h`` (batch, d) of iteration ``t`` (0-based) with its timestep."""
        e = self.table[min(t, self.table.shape[0] - 1)].to(h.dtype)
        e = e * h.norm(dim=-1, keepdim=True) * self.scale
        if self.mode == "add":
            return h + e
        return self.proj(torch.cat([h, e], dim=-1))


class LoopLoRALinear(nn.Module):
    """A frozen-shape linear layer plus one low-rank adapter per loop iteration; the adapter
    of iteration ``self.step`` is applied (none when ``step`` is None: ordinary tokens)."""

    def __init__(self, base: nn.Linear, steps: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.a = nn.Parameter(torch.randn(steps, rank, base.in_features) / math.sqrt(
            base.in_features))
        self.b = nn.Parameter(torch.zeros(steps, base.out_features, rank))
        self.step: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.step is None:
            return y
        t = min(self.step, self.a.shape[0] - 1)
        return y + (x @ self.a[t].T.to(x.dtype)) @ self.b[t].T.to(x.dtype) * self.scale


def install_loop_lora(model: nn.Module, targets: tuple[str, ...], steps: int, rank: int,
                      alpha: float) -> list[LoopLoRALinear]:
    """Wrap every linear named in ``targets`` (by attribute name) with a loop-wise adapter."""
    wrapped = []
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                w = LoopLoRALinear(child, steps, rank, alpha).to(child.weight.device)
                setattr(parent, name, w)
                wrapped.append(w)
    if not wrapped:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, nn.Linear)})
        raise ConfigError(f"lora_targets: no linear layer named {', '.join(targets)} in this "
                          f"model (its linear layers: {', '.join(names)})")
    return wrapped


def embedding_norm(embed: nn.Embedding) -> torch.Tensor:
    """Mean L2 norm of the token embeddings (the target of norm matching)."""
    return embed.weight.detach().norm(dim=-1).mean()
