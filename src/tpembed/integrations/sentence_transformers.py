"""tpembed inside sentence-transformers (6.x): an input module that runs the Encoder for each batch.

``SentenceTransformer(modules=[TPEmbed(...)])`` (or :func:`to_sentence_transformer`) gives a model
whose ``encode`` returns ``Encoder.encode``'s vectors (equal up to batch composition, 1e-4): the
module receives the raw texts, the Encoder renders the prompt, applies Token Prepending, stops at
the output layer and returns the last-token states as ``sentence_embedding``.

Saving writes ``tpembed_config.json`` (the Encoder settings and the Encoder's identity: the
weights and every setting that changes a vector, :func:`tpembed.identity.encoder_identity`), not
the weights: they are referenced by their source (packaged name, .gguf path, HF folder or hub id)
and loaded from it again. ``modules.json`` then names this class, which lives outside the
sentence_transformers package, so sentence-transformers 6 imports it only with
``SentenceTransformer(folder, trust_remote_code=True)``; nothing is downloaded, the class comes
from the installed tpembed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ._extras import require

# before anything heavy, so a missing extra fails fast
require("sentence_transformers", "st", "tpembed's sentence-transformers integration")

from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.base.modules import InputModule  # noqa: E402

from .. import __version__  # noqa: E402
from ..config import ConfigSource, EncoderConfig  # noqa: E402
from ..encoder import Encoder  # noqa: E402
from ..identity import encoder_identity  # noqa: E402
from ._shared import TemplateEncoders, build_encoder, portable_source  # noqa: E402


class TPEmbed(InputModule):
    """A sentence-transformers input module that embeds texts with a tpembed :class:`~tpembed.Encoder`.

    ``config`` is a named config, a YAML file of them, an :class:`~tpembed.EncoderConfig` or None
    (the packaged default config), ``settings`` are Encoder keywords on top; or pass a ready ``encoder``. The module tokenises nothing itself: ``preprocess`` checks
    the texts and the prompt, ``forward`` calls ``Encoder.encode`` on the batch.

    A ``prompt`` (or ``prompt_name``) given to ``SentenceTransformer.encode`` is a tpembed template
    for that call: it must hold ``{sentence}`` (and ``{placeholder}`` under TP) and replaces the
    config's prompt method; every other setting is kept. An empty prompt means the config's prompt.
    Text without ``{sentence}`` is an error, never prepended to the sentence.
    """

    config_file_name = "tpembed_config.json"  # beside, never instead of, a Hugging Face config.json
    save_in_root = True
    modalities = ["text"]

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        encoder: Encoder | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        if encoder is not None and (config is not None or settings):
            raise ValueError("pass either a ready encoder or settings, not both")
        self._set_encoder(encoder if encoder is not None else build_encoder(config, settings))

    def _set_encoder(self, encoder: Encoder) -> None:
        self._encoders = TemplateEncoders(encoder)
        # Registered as a submodule so model.to(...), .half(), .device and .dtype act on the weights.
        self.model = encoder.loaded.model

    @property
    def encoder(self) -> Encoder:
        """The Encoder for the config's own prompt."""
        return self._encoders.base

    @property
    def tokenizer(self) -> Any:
        return self.encoder.loaded.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Longest prompt in tokens; longer sentences are shortened (never the prompt around them)."""
        return self.encoder.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        config = EncoderConfig(**{**self.encoder.config.model_dump(), "max_length": value})
        self._set_encoder(Encoder(self.encoder.loaded, config=config))

    def get_embedding_dimension(self) -> int:
        return self.encoder.embedding_dim

    def preprocess(
        self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Check the batch and the prompt; the texts themselves go to ``forward`` untouched."""
        # sentence-transformers answers a TypeError / AttributeError from preprocess by prepending
        # the prompt to the texts and calling again without it: never let one escape.
        try:
            bad = [(i, type(x).__name__) for i, x in enumerate(inputs) if not isinstance(x, str)]
            if bad:
                raise ValueError(
                    f"tpembed embeds text only; input {bad[0][0]} is a {bad[0][1]} ({len(bad)} such inputs)"
                )
            self._encoders.get(prompt)  # a bad template fails here, before any forward pass
            return {"text": list(inputs), "template": prompt or None}
        except (TypeError, AttributeError) as err:
            raise ValueError(f"cannot prepare this batch for tpembed: {err}") from err

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        texts = features["text"]
        encoder = self._encoders.get(features.get("template"))
        vectors = encoder.encode(texts, batch_size=max(len(texts), 1), show_progress_bar=False, convert_to_tensor=True)
        features["sentence_embedding"] = vectors.to(encoder.loaded.device)
        return features

    def get_config_dict(self) -> dict[str, Any]:
        settings = self.encoder.config.model_dump()
        settings["model"] = portable_source(settings["model"])
        return {"tpembed_version": __version__, "settings": settings, "identity": encoder_identity(self.encoder)}

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write ``tpembed_config.json``; the weights stay where their source points."""
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TPEmbed:
        """Rebuild the module from ``tpembed_config.json``.

        ``model_kwargs`` given to ``SentenceTransformer(...)`` override saved Encoder settings
        (e.g. ``{"dtype": "float16"}``); unknown keys are an error.
        """
        saved = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        if "settings" not in saved:
            raise ValueError(f"{model_name_or_path} has no readable {cls.config_file_name} with tpembed settings")
        model_kwargs = dict(model_kwargs or {})
        module = cls(EncoderConfig(**{**saved["settings"], **model_kwargs}))
        if saved.get("identity"):
            # settings changed on purpose through model_kwargs change the identity: then only the weights count
            module._check_identity(saved["identity"], model_name_or_path, only=("model",) if model_kwargs else None)
        return module

    def _check_identity(self, saved: Mapping[str, Any], where: str, only: Sequence[str] | None = None) -> None:
        """Warn when the weights (or a vector-changing setting, such as the device type) are not
        the ones the model was saved with: the embeddings will differ."""
        now = encoder_identity(self.encoder) or {}
        keys = sorted(set(saved) | set(now)) if only is None else list(only)
        changed = {k: (saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)}
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            what = "weights" if "model" in changed else "identity"
            warnings.warn(
                f"the {what} of {self.encoder.config.model!r} changed since {where} was saved ({detail}): "
                "embeddings will not match those made with the saved model",
                UserWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"TPEmbed({self.encoder!r})"


def to_sentence_transformer(
    config: ConfigSource = None,
    *,
    prompts: Mapping[str, str] | None = None,
    **encoder_settings: Any,
) -> SentenceTransformer:
    """A ``SentenceTransformer`` with one :class:`TPEmbed` module (see :func:`tpembed.to_sentence_transformer`).

    Similarity is cosine, as in the paper; embeddings are returned unnormalised unless
    ``encode(..., normalize_embeddings=True)``, as in sentence-transformers.
    """
    module = TPEmbed(config, **encoder_settings)
    return SentenceTransformer(
        modules=[module],
        device=str(module.encoder.loaded.device),
        prompts=dict(prompts) if prompts else None,
        similarity_fn_name="cosine",
    )
