"""``tpembed data download``: fetch and verify the SentEval data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app
from ._common import user_errors

data_app = typer.Typer(help="SentEval data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    dest: Annotated[Path, typer.Argument(help="folder to download and unpack into")],
    url: Annotated[
        Optional[str], typer.Option(help="tarball URL (default: $TPEMBED_DATA_URL, else the SimCSE senteval.tar)")
    ] = None,
    sha256: Annotated[
        Optional[str], typer.Option(help="expected SHA-256 of the tarball (default: $TPEMBED_DATA_SHA256)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Download the SentEval data the paper uses, verify it (checksum, every task's counts), unpack it."""
    from ..evaluation import download_senteval

    with user_errors():
        root = download_senteval(dest, url=url, expected_sha256=sha256, progress=not quiet)
    typer.echo(f"SentEval data ready in {root} (use --data {root}, or export TPEMBED_DATA={root})")
