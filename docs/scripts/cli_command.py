"""The ``tpembed`` typer app as the click command that mkdocs-click documents (docs/reference/cli.md).

The CLI reference is generated from this object at build time, so it is always the installed CLI.
"""

from __future__ import annotations

import typer

from tpembed.cli import app

#: the click command behind ``tpembed`` (a ``TyperGroup``: every subcommand, option and help text)
command = typer.main.get_command(app)
