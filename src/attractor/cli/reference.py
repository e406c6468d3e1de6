"""The CLI reference page (``docs/cli.md``), generated from the commands themselves (their
options come from the config dataclasses), so it cannot drift from the code:
``python -m attractor.cli.reference > docs/cli.md``; ``tests/test_docs.py`` fails when the
page is stale."""
from __future__ import annotations

from typing import Any

HEADER = """# CLI reference

Generated from the commands by `python -m attractor.cli.reference > docs/cli.md` (the test suite
fails when this page is stale). Every option of a command built from a config dataclass is that
dataclass's field; `attractor COMMAND --help` prints the same.
"""


def _default(param: Any) -> str:
    """The default as the command line would show it ('' when there is none to show)."""
    value: Any = param.default
    if value is None or callable(value) or param.required:
        return ""
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return param.opts[0] if value else param.secondary_opts[0]
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else ""
    return str(value)


def _cell(text: str) -> str:
    """Markdown table cell text (pipes escaped, one line)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _command(path: list[str], cmd: Any) -> list[str]:
    """One command's section: usage, help, arguments and options."""
    name = " ".join(path)
    out = [f"## `{name}`", ""]
    if cmd.help:
        out += [cmd.help.strip().replace("\b\n", ""), ""]
    # typer vendors its own click: parameters are told apart by kind, not by class
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    usage = " ".join([name] + [f"{a.name.upper()}{'...' if a.nargs == -1 else ''}" for a in args]
                     + (["[OPTIONS]"] if opts else []))
    out += ["```", usage, "```", ""]
    if args:
        out += ["| argument | help |", "|---|---|"]
        out += [f"| `{a.name.upper()}` | {_cell(getattr(a, 'help', '') or '')} |" for a in args]
        out.append("")
    if opts:
        out += ["| option | default | help |", "|---|---|---|"]
        for o in opts:
            flags = " / ".join(f"`{f}`" for f in o.opts + o.secondary_opts)
            default = _default(o)
            out.append(f"| {flags} | {f'`{_cell(default)}`' if default else ''} | "
                       f"{_cell(o.help or '')} |")
        out.append("")
    return out


def _walk(path: list[str], cmd: Any) -> list[str]:
    if hasattr(cmd, "list_commands"):   # a group
        ctx = cmd.context_class(cmd)
        out = []
        for sub in cmd.list_commands(ctx):
            out += _walk(path + [sub], cmd.get_command(ctx, sub))
        return out
    return _command(path, cmd)


def render() -> str:
    """The whole page."""
    import typer

    from attractor.cli import app

    root = typer.main.get_command(app)
    return "\n".join([HEADER] + _walk(["attractor"], root)).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
