"""``tpembed embed``: embed a corpus (txt / jsonl / csv / parquet) into Parquet shards, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import config_source, fail, user_errors


@app.command()
@config_source("option", positional="inputs")
def embed(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT", help="files (.txt .jsonl .csv .parquet), folders or globs")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder (reruns resume it)")],
    text_column: Annotated[str, typer.Option("--text-column", help="column / field holding the text")] = "text",
    id_column: Annotated[
        Optional[str], typer.Option("--id-column", help="column / field holding the id (default: 'id' if present, else file:row)")
    ] = None,
    rows_per_shard: Annotated[int, typer.Option("--rows-per-shard", min=1, help="input rows per output shard")] = 10_000,
    keep_text: Annotated[bool, typer.Option("--keep-text", help="store the text beside its vector")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local | ray")] = "local",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray actors (one model each)")] = 1,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0, help="GPUs per Ray actor")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", min=0, help="CPUs per Ray actor")] = 1.0,
    address: Annotated[
        Optional[str], typer.Option("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local one)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    run_config: Any = None,
) -> None:
    """Embed every row of a corpus into OUTPUT/embeddings/*.parquet (id, embedding); bad rows go to rejects.jsonl.

    An empty text is a text (embedded, and counted in the summary); a null or non-text value, a line
    that is not valid UTF-8 or JSON, a missing id is a rejected row.
    """
    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, got {engine!r}")
    with user_errors():
        encoder_config = run_config.encoder_config()
        from ..corpus import embed_corpus  # torch loads here, after the checks above

        try:
            result = embed_corpus(
                inputs, output, encoder_config, text_column=text_column, id_column=id_column,
                rows_per_shard=rows_per_shard, keep_text=keep_text, engine=engine, workers=workers,  # type: ignore[arg-type]
                gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, address=address, progress=not quiet,
            )
        except ImportError as err:
            fail(err)
    wall = result["wall_seconds"]
    rate = f", {result['embedded'] / wall:.1f} rows/s" if wall > 0 else ""
    typer.echo(
        f"embedded {result['embedded']} of {result['rows_read']} rows in {len(result['shards'])} shards "
        f"({result['shards_resumed']} from an earlier run) in {wall:.1f} s{rate}; dim {result['embedding_dim']}"
    )
    if result.get("empty_texts"):
        typer.echo(f"{result['empty_texts']} of the embedded texts were empty (embedded as the prompt around an "
                   "empty sentence: the same vector as encode(\"\"))")
    if result["rejected"]:
        typer.echo(f"rejected {result['rejected']} rows: see {output / 'rejects.jsonl'}")
    typer.echo(f"output: {output / 'embeddings'} (manifest: {output / 'manifest.json'})")
