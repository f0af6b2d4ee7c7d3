"""The ``tpembed`` Typer application; each command lives in its own module of this package.

Two things every command gets from here: a usage error (unknown option, bad value, missing
argument) is one ``error:`` line naming ``--help``, exit status 2, like every other user error;
and the help is plain text up to 120 columns wide, with the options in panels (the command's own,
where the settings come from, and one option per setting), so no option name is cut short.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import typer

try:  # newer typer vendors click (its exceptions are not the click package's)
    from typer._click import core as _core
    from typer._click import exceptions as _exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import core as _core  # type: ignore[no-redef]
    from click import exceptions as _exceptions  # type: ignore[no-redef]
from typer.core import TyperCommand, TyperGroup

#: help is wrapped at the terminal's width, up to this many columns
HELP_WIDTH = 120
#: the panels of a command's help, in order (an option's rich_help_panel names its panel)
SOURCE_PANEL = "Config (where the settings come from)"
SETTINGS_PANEL = "Settings (each overrides the config's value)"


def _one_line(err: _exceptions.UsageError, ctx: _core.Context) -> NoReturn:
    where = err.ctx.command_path if err.ctx is not None else ctx.command_path
    message = " ".join(err.format_message().split())
    typer.echo(f"error: {message} (see '{where} --help')", err=True)
    raise typer.Exit(2)


class _Group(TyperGroup):
    """The command group: usage errors as one ``error:`` line."""

    def make_context(self, info_name: str | None, args: list[str], parent: _core.Context | None = None, **extra: Any):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _exceptions.UsageError as err:
            _usage_error(err, _core.Context(self, info_name=info_name))

    def invoke(self, ctx: _core.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _exceptions.UsageError as err:
            _usage_error(err, ctx)


def _usage_error(err: _exceptions.UsageError, ctx: _core.Context) -> NoReturn:
    if type(err).__name__ == "NoArgsIsHelpError":  # `tpembed` alone prints the help
        raise err
    _one_line(err, ctx)


# typer's own value placeholders (<int range>, <path>) in click's plain spelling
_METAVAR = re.compile(r"<([a-z][a-z \[\]]*)>")
_PLAIN = {"int": "N", "int range": "N", "float": "X", "float range": "X", "str": "TEXT", "path": "PATH",
          "list[str]": "TEXT...", "list[path]": "PATH..."}


class _Command(TyperCommand):
    """A command whose help lists its options in panels (see :data:`SOURCE_PANEL`, :data:`SETTINGS_PANEL`)."""

    def format_options(self, ctx: _core.Context, formatter: Any) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            record = (_METAVAR.sub(lambda m: _PLAIN.get(m.group(1), m.group(1).upper()), record[0]), record[1])
            if param.param_type_name == "argument":
                panel = "Arguments"
                record = (record[0].split(" ")[0], record[1])  # its name says it; typer adds a type (TEXT...)
            else:
                panel = getattr(param, "rich_help_panel", None) or "Options"
            panels.setdefault(panel, []).append(record)
        for panel in ("Arguments", "Options", SOURCE_PANEL, SETTINGS_PANEL, *panels):
            records = panels.pop(panel, None)
            if records:
                with formatter.section(panel):
                    formatter.write_dl(records)


class _Typer(typer.Typer):
    """Every command of this app is a :class:`_Command`."""

    def command(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    help="Sentence embeddings from decoder-only LLMs with Token Prepending.",
    no_args_is_help=True,
    cls=_Group,
    rich_markup_mode=None,
    context_settings={"max_content_width": HELP_WIDTH},
)


@app.callback()
def main() -> None:
    """tpembed: training-free sentence embeddings (PromptEOL, MetaEOL, CoT, KE) with Token Prepending."""
