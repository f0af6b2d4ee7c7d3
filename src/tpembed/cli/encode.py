"""``tpembed encode``: embed a few sentences, print their cosine similarities, optionally save them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from ._app import app
from ._common import check_output_file, config_source, describe_config, user_errors


@app.command()
@config_source("option", positional="sentences")
def encode(
    sentences: Annotated[
        list[str], typer.Argument(metavar="SENTENCE", help='sentences to embed ("" is a text too)')
    ],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="save the embeddings as .npy (the suffix is added)")
    ] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the embeddings")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    run_config: Any = None,
    config_name: Optional[str] = None,
) -> None:
    """Embed sentences; print the shape and the pairwise cosine similarity matrix.

    Which config embedded them is said on stderr, so stdout stays the same for scripts.
    """
    config = run_config.encoder_config()
    with user_errors():
        target = check_output_file(output, suffix=".npy") if output is not None else None
        from ..encoder import Encoder
        from ..models import load_checked

        encoder = Encoder(load_checked(config, progress=not quiet), config=config)
        vectors = encoder.encode(sentences, normalize_embeddings=normalize, show_progress_bar=False if quiet else None)
    typer.echo(describe_config(config_name, run_config), err=True)  # after the work: an error stays one line
    typer.echo(f"embeddings: {vectors.shape[0]} x {vectors.shape[1]} (float32)")
    sim = encoder.similarity(vectors, vectors)
    width = max(len(str(len(sentences))), 2)
    typer.echo("cosine similarity:")
    typer.echo(" " * (width + 1) + " ".join(f"{j:>6d}" for j in range(len(sentences))))
    for i, row in enumerate(sim):
        typer.echo(f"{i:>{width}d} " + " ".join(f"{x:6.3f}" for x in row) + f"  {sentences[i][:60]}")
    if target is not None:
        with user_errors():
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, vectors)
        typer.echo(f"saved {target}")
