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

from .cache import EmbeddingCache, cached
from .config import EncoderConfig, RunConfig
from .early_exit import resolve_output_layer
from .encoder import Encoder
from .evaluation import (ensure_senteval, evaluate, format_table, library_versions, locate_senteval, tasks_for,
                         write_json)
from .models import LoadedModel, default_cache_dir, load_model_with_progress, model_num_layers, resolve_device


def default_data_dir() -> Path | None:
    """$TPEMBED_DATA, else a copy beside a source checkout or in the cache (None: none; nothing is fetched)."""
    if os.environ.get("TPEMBED_DATA"):
        return Path(os.environ["TPEMBED_DATA"])
    return locate_senteval()


def check_layers(config: EncoderConfig, num_layers: int) -> None:
    """The layer settings against a model with ``num_layers`` decoder layers (the Encoder's rules).

    Run before loading (with :func:`~tpembed.models.model_num_layers`), so a bad index fails in seconds.
    """
    for layer in config.output_layers():
        resolve_output_layer(layer, num_layers)
    if config.cp_layer is not None and config.cp_layer >= num_layers:
        raise ValueError(f"cp_layer={config.cp_layer} is beyond {config.model}'s {num_layers} decoder layers (0-based)")
    if config.use_which_plan == "tp" and config.tp_exiting_index > num_layers:
        raise ValueError(
            f"tp_exiting_index={config.tp_exiting_index} is beyond {config.model}'s {num_layers} decoder layers "
            f"(TP runs before layers [tp_starting_index, tp_exiting_index), 0-based)"
        )


def check_before_loading(config: EncoderConfig) -> None:
    """The device and layer settings against the model's config, read without its weights (seconds)."""
    resolve_device(config.device)
    num_layers = model_num_layers(config.model)
    if num_layers is not None:
        check_layers(config, num_layers)


def load_checked(config: EncoderConfig, *, progress: bool = True) -> LoadedModel:
    """Load ``config.model`` (one bar per phase) once its layer settings fit the model's config.

    The config is read without weights, so a bad layer index (or device) fails in seconds, not after the load.
    """
    check_before_loading(config)
    return load_model_with_progress(config.model, device=config.device, dtype=config.dtype, progress=progress)


def cache_namespace(encoder: Encoder, output_index: int | None = None) -> str | None:
    """Every setting that changes a vector, plus the model's identity (file hash where known).

    ``output_index`` overrides the encoder's own output layer (the sweep caches many layers).
    batch_size and device index are left out on purpose: results do not depend on them.
    Returns None for a model with no stable identity (an in-memory model without a file hash or
    source): caching it could silently serve another model's vectors.
    """
    config, identity = encoder.config, encoder.loaded.identity
    model_id = identity.get("sha256") or (
        f"{identity['source']}@{identity.get('revision')}" if identity.get("source") else None
    )
    if model_id is None:
        return None
    key: dict[str, Any] = {
        "model": model_id,
        "dtype": identity.get("dtype"),
        "device_type": str(encoder.loaded.device.type),
        "prompt": list(encoder.prompt.templates),
        "plan": config.use_which_plan,
        "output_layer": encoder.output_index if output_index is None else output_index,
        "max_length": encoder.max_length,
    }
    # the levers add keys only when on, so the namespaces (and cached vectors) of plain runs stay the same
    if output_index is None and len(encoder.output_indices) > 1:
        key["output_layer"] = encoder.output_indices
    if len(encoder.members) > 1:
        key["ensemble"] = [len(m.templates) for m in encoder.members]
    if config.pooling != "last_token":
        key["pooling"] = config.pooling
    if config.cp_layer is not None:
        key["cp"] = [config.cp_layer, config.cp_alpha, config.cp_mode]
    if encoder.use_tp:
        key.update(tp=[config.tp_starting_index, config.tp_exiting_index], pst_init=config.pst_init, seed=config.seed)
    return json.dumps(key, sort_keys=True)


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

    def encode(sentences: list[str]) -> np.ndarray:
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

