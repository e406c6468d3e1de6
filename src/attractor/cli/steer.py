"""``attractor steer build``: a steering vector from a run (:mod:`attractor.steering.build`)."""
from __future__ import annotations

import typer

from attractor.cli.app import steer_app
from attractor.cli.options import DEVICE, DTYPE, RUN


@steer_app.command("build")
def steer_build_cmd(
    run: str = RUN,
    kind: str = typer.Option(..., help="fractional (contrastive prompts, Fractional Reasoning) | stability (stable-and-correct minus unstable rollouts)."),
    out: str = typer.Option(..., "--out", help="Vector file to write (.safetensors)."),
    positive: str = typer.Option("Solve the problem with step-by-step detailed reasoning. {question}", help="fractional: the positive prompt template ({question}; a path reads the file)."),
    negative: str = typer.Option("Solve the problem with direct answering. {question}", help="fractional: the negative prompt template."),
    tokens: int = typer.Option(16, help="stability: completion tokens averaged per rollout."),
    max_tokens_per_batch: int = typer.Option(16384, help="Memory budget: rows x padded length per forward."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Build a steering vector from RUN's questions (fractional) or rollouts (stability)."""
    from attractor.steering.build import run_steer_build
    from attractor.tasks.prompts import resolve_template
    from attractor.ui import console

    run_steer_build(run, kind, out, positive=resolve_template(positive, "--positive"),
                    negative=resolve_template(negative, "--negative"), tokens=tokens,
                    device=device, dtype=dtype, max_tokens=max_tokens_per_batch,
                    log=console.print)
    console.print(f"next: attractor sample ... --steer {out} --alpha 0.1 (held-out questions: "
                  "--offset)")
