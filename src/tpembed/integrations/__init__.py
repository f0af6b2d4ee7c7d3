"""Adapters that put tpembed's Encoder inside other libraries (sentence-transformers, MTEB).

They call the Encoder and nothing more: the prompt, Token Prepending, early exit and the prefix
cache all apply unchanged. Importing this package imports neither library; each builder imports
its library when called and names the extra to install when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sentence_transformers import SentenceTransformer

    from ..config import ConfigSource
    from .mteb import TPEmbedMTEB


def to_sentence_transformer(
    config: ConfigSource = None,
    *,
    prompts: Mapping[str, str] | None = None,
    **encoder_settings: Any,
) -> SentenceTransformer:
    """A ``SentenceTransformer`` whose only module runs tpembed's Encoder (needs ``tpembed[st]``).

    ``config`` is a named config of the shipped YAML (e.g. ``"smollm2-135m-best"``), a YAML file
    of named configs, an :class:`~tpembed.EncoderConfig`, or None: the packaged default config
    (:func:`tpembed.config.default_config_name`), as for ``Encoder()`` and every CLI command (a
    ``model=`` without a config starts from EncoderConfig's defaults instead). Keywords are
    Encoder settings (``model=``, ``use_which_plan=`` ...) applied on top, by
    :func:`tpembed.config.resolve_config`. ``prompts`` become the model's named prompts
    (``encode(..., prompt_name=...)``); in this model a prompt is a tpembed template.
    """
    from .sentence_transformers import to_sentence_transformer as build

    return build(config, prompts=prompts, **encoder_settings)


def mteb_model(
    config: ConfigSource = None,
    *,
    templates: Mapping[str, str] | None = None,
    **encoder_settings: Any,
) -> TPEmbedMTEB:
    """An MTEB v2 encoder (``mteb.evaluate(mteb_model(...), tasks)``) running tpembed's Encoder.

    ``config`` and keywords as in :func:`to_sentence_transformer`. ``templates`` maps MTEB prompt
    keys (``"query"``, ``"document"``, a task type such as ``"Retrieval"``, a task name, or
    ``"<task>-query"``) to tpembed templates; anything unmatched uses the config's prompt.
    Needs ``tpembed[mteb]``.
    """
    from .mteb import mteb_model as build

    return build(config, templates=templates, **encoder_settings)


__all__ = ["mteb_model", "to_sentence_transformer"]
