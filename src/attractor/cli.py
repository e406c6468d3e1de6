"""The ``attractor`` command line: thin wrappers that parse options, call the library and print
a rich summary. Heavy imports (torch, transformers) happen inside the commands, so
``attractor --help`` starts fast."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from attractor.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure and improve the stability of LLM reasoning.")


@app.callback()
def _root() -> None:
    """Measure and improve the stability of LLM reasoning (run a command with --help)."""


@app.command("train-tiny")
def train_tiny_cmd(
    out: str = typer.Option("train-out/tiny", help="Output directory (checkpoint, log, model)."),
    steps: int = typer.Option(5000, help="Optimiser steps."),
    batch_size: int = typer.Option(24, help="Problems per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    seed: int = typer.Option(0, help="Seed of initialisation and data."),
    eval_every: int = typer.Option(500, help="Steps between dev evaluations."),
    threads: int = typer.Option(2, help="torch CPU threads."),
) -> None:
    """Train the embedded tiny reasoning model (seeded, resumable: run it again to resume)."""
    from attractor.models.train_tiny import TinyTrainConfig, train_tiny

    cfg = TinyTrainConfig(out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          eval_every=eval_every, threads=threads)
    result = train_tiny(cfg)
    typer.echo(f"done: {result}")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors print one line and exit 2; other failures exit 1."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="attractor", standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        # click's usage errors (unknown option, bad type, missing argument) carry show/exit_code
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            sys.exit(2)
        raise
    if isinstance(result, int) and result:
        sys.exit(result)
