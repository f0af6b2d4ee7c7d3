"""What an embedding depends on, in one canonical form: the model's identity plus every setting
that changes a vector (:func:`identity`). It keys the embedding cache, corpus resume, MTEB result
folders, saved sentence-transformers models and the server's ``/v1/models``.

Each vector-changing setting of :class:`~tpembed.config.EncoderConfig` reaches the identity in one
of three ways: the prompt's templates (prompt_method, template, demonstration and whether TP puts
``<PST>`` in them), the base keys (model, dtype, output layers, max_length, plan), or a lever's own
``identity()`` (TP's range and ``<PST>``, CP's layer, alpha and mode, the pooling). A lever adds keys
only when it is on, so the identities (and cache namespaces) of earlier releases stay the same.
``tests/test_identity.py`` walks every field to prove none is forgotten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import EncoderConfig
    from .encoder import Encoder
    from .models import LoadedModel

_NO_LIMIT = 1_000_000_000  # a model that states no position limit


@dataclass(frozen=True)
class ModelFacts:
    """What the identity needs of the model: from the loaded model, or from its config alone."""

    model_id: str | None  # None: an in-memory model with no stable identity
    num_layers: int
    max_positions: int | None
    dtype: str
    device_type: str


def loaded_facts(loaded: LoadedModel) -> ModelFacts:
    """The facts of a loaded model."""
    from .models import loaded_model_id

    return ModelFacts(
        loaded_model_id(loaded.identity),
        loaded.num_layers,
        getattr(loaded.model.config, "max_position_embeddings", None),
        str(loaded.model.dtype).removeprefix("torch."),
        loaded.device.type,
    )


def planned_facts(config: EncoderConfig) -> ModelFacts:
    """The same facts before loading: the model's config (no weights), device and dtype resolved."""
    from .models import read_model_config, resolve_device, resolve_dtype

    device = resolve_device(config.device)
    facts = read_model_config(config.model)
    if facts.num_layers is None:
        raise ValueError(f"{config.model!r}: its config does not give the number of layers; cannot check its settings")
    dtype = str(resolve_dtype(config.dtype, device)).removeprefix("torch.")
    return ModelFacts(facts.model_id, facts.num_layers, facts.max_positions, dtype, device.type)


def identity(config: EncoderConfig, model: ModelFacts, *, output_index: int | None = None) -> dict[str, Any] | None:
    """Every setting that changes a vector, in canonical form, plus the model's identity.

    ``output_index`` overrides the output layer (the tuners cache each layer of one pass apart).
    Free settings (batch size, device index, the prefix cache) are left out: vectors do not
    depend on them. None for a model with no stable identity: caching it could silently serve
    another model's vectors.
    """
    from .encoder import build_prompt
    from .levers import Pooling, build_levers

    if model.model_id is None:
        return None
    levers = build_levers(config, model.num_layers)
    pooling = next(lever for lever in levers if isinstance(lever, Pooling))
    members, prompt = build_prompt(config, levers)
    limit = model.max_positions or _NO_LIMIT
    layers = pooling.output_indices
    key: dict[str, Any] = {
        "model": model.model_id,
        "dtype": model.dtype,
        "device_type": model.device_type,
        "prompt": list(prompt.templates),
        "plan": config.use_which_plan,
        "output_layer": layers[0] if output_index is None else output_index,
        "max_length": min(config.max_length or limit, limit),
    }
    if output_index is None and len(layers) > 1:
        key["output_layer"] = layers
    if len(members) > 1:
        key["ensemble"] = [len(m.templates) for m in members]
    for lever in levers:
        key.update(lever.identity())
    return key


def encoder_identity(encoder: Encoder, output_index: int | None = None) -> dict[str, Any] | None:
    """The identity of an Encoder's vectors (see :func:`identity`)."""
    return identity(encoder.config, loaded_facts(encoder.loaded), output_index=output_index)


def planned_identity(config: EncoderConfig) -> dict[str, Any] | None:
    """The identity the vectors of ``config`` will have, known before the model loads."""
    return identity(config, planned_facts(config))


def cache_namespace(encoder: Encoder, output_index: int | None = None) -> str | None:
    """The identity as the embedding cache's namespace (canonical JSON); None when there is none."""
    key = encoder_identity(encoder, output_index)
    return None if key is None else canonical_json(key)


def canonical_json(key: dict[str, Any]) -> str:
    """One spelling of an identity: sorted keys, JSON."""
    return json.dumps(key, sort_keys=True)


def identity_digest(key: dict[str, Any]) -> str:
    """A short stable name for an identity (12 hex digits of its canonical JSON's SHA-256)."""
    return hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()[:12]
