"""One evaluation run: a RunConfig -> Encoder -> cached embeddings -> SentEval scores -> table + JSON."""

from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..embedding_cache import EmbeddingCache, cached
from ..config import RunConfig
from ..encoder import Encoder
from ..identity import cache_namespace
from . import ensure_senteval, evaluate, format_table, library_versions, locate_senteval, tasks_for, write_json
from ..models import LoadedModel, default_cache_dir, load_checked


def default_data_dir() -> Path | None:
    """$TPEMBED_DATA, else a copy beside a source checkout or in the cache (None: none; nothing is fetched)."""
    if os.environ.get("TPEMBED_DATA"):
        return Path(os.environ["TPEMBED_DATA"])
    return locate_senteval()


def run_evaluation(
    config: RunConfig,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    limit: int | None = None,
    output: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    loaded: LoadedModel | None = None,
    progress: bool = True,
    probe_jobs: int | None = None,
) -> dict[str, Any]:
    """Evaluate one configuration; print the paper-style table(s); write JSON when ``output``.

    ``probe_jobs`` runs the transfer probe's C x fold fits in that many worker processes
    (the fits are deterministic, so the scores do not depend on it).
    """
    start = time.perf_counter()
    tasks = tasks_for(config.task_set, config.mode)
    # everything that can fail fast does so before the model loads: data (fetched once if missing), layers
    data_dir = ensure_senteval(data_dir, tasks, progress=progress)
    if loaded is None:
        loaded = load_checked(config, progress=progress)
    encoder = Encoder(loaded, config=config.encoder_config())

    encoded = [0]  # sentences that reached the encoder (the rest came from the embedding cache)

    def encode(sentences: list[str]) -> np.ndarray:
        encoded[0] += len(sentences)
        return encoder.encode(sentences, show_progress_bar=progress)

    namespace = cache_namespace(encoder) if use_cache else None
    if use_cache and namespace is None:
        warnings.warn("embedding cache disabled: this in-memory model has no file hash or source to key it by")
    with ExitStack() as stack:
        encode_fn = encode
        if namespace is not None:
            cache = stack.enter_context(EmbeddingCache(default_cache_dir() / "embeddings", namespace))
            encode_fn = cached(encode, cache)
        result = evaluate(tasks, data_dir, encode_fn, mode=config.mode, limit=limit, seed=config.seed,
                          progress=progress, n_jobs=probe_jobs)
    wall = time.perf_counter() - start
    result["meta"]["n_encoded_sentences"] = encoded[0]
    extra = {
        "name": name,
        "model": encoder.loaded.identity,
        "versions": library_versions(),
        "seed": config.seed,
        "wall_seconds": wall,
        "meta": result["meta"],
    }
    if output is not None:
        write_json(output, result["scores"], result["details"], config.model_dump(), extra)
    result.update(extra)
    return result


def print_tables(scores: dict[str, float]) -> str:
    """The STS and/or transfer tables for whichever tasks ran."""
    parts = []
    for kind in ("sts", "transfer"):
        try:
            parts.append(format_table(scores, kind))  # type: ignore[arg-type]
        except ValueError:
            continue
    return "\n".join(parts)

