"""The two typer apps (``attractor`` and its ``latent`` group) and the entry point.

Commands live in :mod:`attractor.cli.commands` (token-space runs) and
:mod:`attractor.cli.latent` (continuous-thought loops); their options come from the config
dataclasses (:mod:`attractor.cli.options`)."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from attractor.cli.options import flags_in
from attractor.errors import UserError
from attractor.store.environment import set_invocation

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Measure and improve the stability of LLM reasoning.")
latent_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Stable Latent Reasoning: train, evaluate, inspect and search "
                              "continuous-thought loops.")
app.add_typer(latent_app, name="latent")
steer_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Steering vectors: build one from a run (then: attractor sample "
                             "--steer V.safetensors --alpha A).")
app.add_typer(steer_app, name="steer")
train_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Train a model for stability (train-tiny trains the embedded model).")
app.add_typer(train_app, name="train")


# --debug (or ATTRACTOR_DEBUG=1): a one-line error also shows its traceback and the cause it
# was raised from (the errors are raised "from None" so that users see one line)
_DEBUG = {"on": False}


def _debug_env() -> bool:
    return os.environ.get("ATTRACTOR_DEBUG", "") not in ("", "0")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full traceback and cause "
                                                          "of an error (also: ATTRACTOR_DEBUG=1)."
                                     )) -> None:
    """Measure and improve the stability of LLM reasoning (run a command with --help)."""
    _DEBUG["on"] = debug or _debug_env()   # set afresh by every invocation


def _show_cause(err: BaseException) -> None:
    """Print ``err``'s traceback with the exception it replaced (its suppressed context)."""
    import traceback

    err.__suppress_context__ = False
    typer.echo("".join(traceback.format_exception(err)).rstrip(), err=True)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors print one line and exit 2; other failures exit 1."""
    command = typer.main.get_command(app)
    set_invocation(["attractor", *(sys.argv[1:] if argv is None else argv)])
    try:
        result = command.main(args=argv, prog_name="attractor", standalone_mode=False)
    except UserError as err:
        if _DEBUG["on"] or _debug_env():
            _show_cause(err)
        # config dataclasses name their fields in backticks: shown as the flags they are here
        typer.echo(f"error: {flags_in(str(err))}", err=True)
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
