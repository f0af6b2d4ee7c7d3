"""``tpembed configs``: list the named configs (shipped with tpembed or in --config FILE), or print one."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._app import app
from ._common import user_errors
from .evaluate import ConfigFileOption


@app.command()
def configs(
    show: Annotated[
        Optional[str], typer.Option("--show", metavar="NAME", help="print entry NAME as a config file to copy and edit")
    ] = None,
    demos: Annotated[
        bool, typer.Option("--demos", help="list the built-in demonstrations (names for demonstration, demo_ensemble, --demos)")
    ] = False,
    config: ConfigFileOption = None,
) -> None:
    """List the named configs for `tpembed run NAME`: model, plan, layers, prompt, tasks."""
    import yaml

    if demos:
        from ..prompts import DEMONSTRATIONS

        width = max(map(len, DEMONSTRATIONS))
        for name, (sentence, word) in DEMONSTRATIONS.items():
            typer.echo(f"{name.ljust(width)}  {sentence} => {word}")
        typer.echo(f"\n{len(DEMONSTRATIONS)} demonstrations; k-shot: demonstration=storm+jockey, "
                   "ensemble: demo_ensemble=storm,jockey+chef")
        return

    from ..config import default_config_path, describe_entry, entry_document, load_config_file

    path = config or default_config_path()
    with user_errors():
        config_file = load_config_file(path)
        if show is not None:
            document = entry_document(config_file, show)
            typer.echo(f"# {show} from {path}\n# save, edit, then: tpembed run --config FILE")
            typer.echo(yaml.safe_dump(document, sort_keys=False).rstrip())
            return
    rows = [{"name": name, **describe_entry(entry)} for name, entry in config_file.models.items()]
    columns = ["name", "model", "plan", "layers", "prompt", "task"]
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        mark = " (default)" if row["name"] == config_file.default_config else ""
        typer.echo(("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip()) + mark)
    typer.echo(f"\n{len(rows)} configs in {path}\nrun one: tpembed run NAME    show one: tpembed configs --show NAME")
