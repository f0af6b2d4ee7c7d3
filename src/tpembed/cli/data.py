"""``tpembed data download``: fetch and verify the SentEval data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app
from ._common import fail

data_app = typer.Typer(help="SentEval data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    dest: Annotated[Path, typer.Argument(help="folder to download and unpack into")],
    url: Annotated[Optional[str], typer.Option(help="tarball URL (default: the SimCSE senteval.tar)")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="expected SHA-256 of the tarball")] = None,
) -> None:
    """Download the SentEval data the paper uses, unpack it and verify every task's counts."""
    from ..evaluation import SENTEVAL_URL, DownloadError, download_senteval

    try:
        root = download_senteval(dest, url=url or SENTEVAL_URL, expected_sha256=sha256)
    except (DownloadError, ValueError, OSError) as err:
        fail(err)
    typer.echo(f"SentEval data ready in {root} (use --data {root})")
