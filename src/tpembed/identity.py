"""What an embedding depends on, in one canonical form: the model's identity plus every setting
that changes a vector. It keys the embedding cache, corpus resume, MTEB result folders, saved
sentence-transformers models and the server's ``/v1/models``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encoder import Encoder


def model_fingerprint(model: str) -> str:
    """The model's identity without loading it: a file's SHA-256 where there is a file, else its name.

    A packaged model or a .gguf file is hashed (remembered per size and mtime); a folder is its
    absolute path; a hub id its name.
    """
    from .models import PACKAGED_MODELS, default_cache_dir, file_sha256, packaged_model_file

    cache = default_cache_dir()
    if model in PACKAGED_MODELS:
        return "sha256:" + file_sha256(packaged_model_file(model, cache), cache)
    path = Path(model).expanduser()
    if path.is_file():
        return "sha256:" + file_sha256(path, cache)
    return str(path.resolve()) if path.exists() else model


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


