"""``embed_corpus``: the library call under ``tpembed embed``."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any, Literal

from ..config import ConfigSource
from .readers import DEFAULT_TEXT_COLUMN, Columns
from .run import finish_run, prepare_run

ENGINES = ("local", "ray")
DEFAULT_ROWS_PER_SHARD = 10_000


def embed_corpus(
    inputs: str | os.PathLike[str] | list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    config: ConfigSource = None,
    *,
    text_column: str = DEFAULT_TEXT_COLUMN,
    id_column: str | None = None,
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    keep_text: bool = False,
    engine: Literal["local", "ray"] = "local",
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    address: str | None = None,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Embed every row of ``inputs`` into Parquet shards under the folder ``output``; return the manifest.

    ``inputs``: files (.txt: one text per line; .jsonl, .csv, .parquet: ``text_column``), folders
    or globs of them. ``config``: a named config (``tpembed configs``), a YAML file of them, an
    :class:`EncoderConfig` or None (the packaged default config, as everywhere: see
    :func:`tpembed.config.resolve_config`); ``settings`` override its keys (``batch_size=32``, ``device="cuda"`` ...).

    Each row gets an id: the ``id_column`` value (default: an ``id`` column where a file has one),
    else ``file:row`` (row counted from 1, a txt file's line number). Rows with no usable text go
    to ``output/rejects.jsonl`` with the reason. The run is resumable: run it again with the same
    arguments and the finished shards are kept; other settings into the same folder are refused.

    ``engine="ray"`` runs ``workers`` actors on Ray Data (each loads the model once, with
    ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs); it joins the cluster at ``address``
    (or ``RAY_ADDRESS``) or starts a local one. The output is the same as the local engine's.
    """
    from ..integrations._extras import require
    from ..config import resolve_config

    require("pyarrow", "corpus", "tpembed embed")  # before any work: every shard is Parquet
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    resolved = resolve_config(config, settings).encoder_config()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    columns = Columns(text=text_column, id=id_column)
    # prepare_run checks the layers (the run's identity is built from the model's config) before writing
    run = prepare_run(list(inputs), output, resolved, columns, rows_per_shard, keep_text)
    if engine == "local":
        from .local import run_local

        counts, identity = run_local(run, resolved, progress=progress)
        extra_versions: dict[str, str] = {}
    else:
        from .ray_engine import run_ray

        counts, identity = run_ray(run, resolved, workers=workers, gpus_per_worker=gpus_per_worker,
                                   cpus_per_worker=cpus_per_worker, address=address, progress=progress)
        extra_versions = {"ray": metadata.version("ray")}
    extra_versions["pyarrow"] = metadata.version("pyarrow")
    return finish_run(run, counts, {
        "engine": engine,
        "config": resolved.model_dump(),
        "model": identity,
        "extra_versions": extra_versions,
    })
