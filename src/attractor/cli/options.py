"""Command-line options generated from the config dataclasses, so each option's name, default
and help is written once (in the dataclass field), as litgpt generates its CLI from dataclasses.

A field ``max_new_tokens`` becomes ``--max-new-tokens``; a bool field ``chat_template`` becomes
``--chat-template/--no-chat-template``; a nested dataclass (``RunConfig.sampling``) contributes
its own fields, flattened. :func:`config_command` registers a function ``fn(cfg, **own)`` as a
command whose options are the dataclass's fields followed by ``fn``'s own parameters.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from typing import Any, Callable

import typer

KW = inspect.Parameter.KEYWORD_ONLY


def flag(name: str) -> str:
    """The CLI flag of config field ``name`` (``max_new_tokens`` -> ``--max-new-tokens``)."""
    return "--" + name.replace("_", "-")


def flags_in(message: str) -> str:
    """A config error's message with its `field` names written as the CLI flags they are."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flag(m.group(1)), message)


def help_of(cls: type, name: str) -> str:
    """The help string of field ``name`` of dataclass ``cls`` (nested dataclasses searched)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    for f in dataclasses.fields(cls):
        sub = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(sub):
            try:
                return help_of(sub, name)
            except KeyError:
                pass
    raise KeyError(name)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def leaf_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every non-dataclass field of ``cls``, nested ones flattened."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += leaf_fields(hints[f.name])
        else:
            out.append((f, hints[f.name]))
    return out


def field_options(cls: type, *, skip: tuple[str, ...] = (), required: tuple[str, ...] = (),
                  short: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter with a ``typer.Option`` per field of ``cls`` (``skip``: left out;
    ``required``: no default on the command line; ``short``: extra short flags like ``-n``)."""
    params = []
    for f, tp in leaf_fields(cls):
        if f.name in skip:
            continue
        decls = [f"{flag(f.name)}/--no-{f.name.replace('_', '-')}" if tp is bool
                 else flag(f.name)]
        if short and f.name in short:
            decls.append(short[f.name])
        default = ... if f.name in required else default_of(f)
        if isinstance(default, tuple):
            default = list(default)
        params.append(inspect.Parameter(
            f.name, KW, annotation=tp,
            default=typer.Option(default, *decls, help=f.metadata.get("help", ""))))
    return params


def build(cls: type, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` from flat option values (nested dataclasses filled from theirs;
    fields without a value keep their defaults)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = build(hints[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def config_command(group: typer.Typer, name: str, config: type, *,
                   skip: tuple[str, ...] = (), required: tuple[str, ...] = (),
                   short: dict[str, str] | None = None) -> Callable:
    """Register ``fn(cfg, **own)`` as command ``name`` of ``group``: its options are the fields
    of ``config`` (see :func:`field_options`) then ``fn``'s own keyword parameters."""

    def decorate(fn: Callable) -> Callable:
        own = [p.replace(kind=KW)
               for p in list(inspect.signature(fn, eval_str=True).parameters.values())[1:]]
        generated = field_options(config, skip=skip, required=required, short=short)
        names = {p.name for p in generated}
        clash = names & {p.name for p in own}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} shadow config fields")

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            cfg = build(config, {k: v for k, v in kwargs.items() if k in names})
            return fn(cfg, **{k: v for k, v in kwargs.items() if k not in names})

        # arguments first (typer lists them in order), then the generated options, then fn's own
        args = [p for p in own if isinstance(p.default, typer.models.ArgumentInfo)]
        command.__signature__ = inspect.Signature(
            args + generated + [p for p in own if p not in args])
        del command.__wrapped__  # typer must read __signature__, not fn's own signature
        command.__annotations__ = {p.name: p.annotation
                                   for p in command.__signature__.parameters.values()}
        group.command(name)(command)
        return fn

    return decorate


# Options of commands that have no config dataclass, each written once and shared.
def _run_option(name: str) -> Any:
    from attractor.config import RunConfig

    return typer.Option("auto", help=help_of(RunConfig, name))


DTYPE = _run_option("dtype")
GRADER = _run_option("grader")
def _device(value: str) -> str:
    from attractor.checks import check_device

    return check_device(value)


def _seed(value: int) -> int:
    from attractor.checks import check_seed

    return check_seed(value)


DEVICE = typer.Option("auto", help="auto | cpu | cuda[:i].", callback=_device)
DATA_DIR = typer.Option(None, help="Folder of the preset data files (default: "
                                   "$ATTRACTOR_DATA_DIR or ../shared/data).")
LAYER = typer.Option(None, help="Layer of the captured latents to use (default: the last).")
POSITION = typer.Option(None, help="Position of the captured latents to use (default: the "
                                   "first captured).")
WINDOW = typer.Option(2048, help="DeepConf sliding-window size in tokens (group confidence).")
RUN = typer.Argument(..., help="Run directory.")
