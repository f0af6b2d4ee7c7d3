"""tpembed: training-free sentence embeddings from decoder-only LLMs with Token Prepending.

The public names are imported on first use, so ``import tpembed`` (and the ``tpembed`` command's
start-up, its checks and its errors) do not wait for torch and transformers to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "Encoder": ".encoder",
    "embed_corpus": ".corpus",
    "EncoderConfig": ".config",
    "LoadedModel": ".models",
    "PACKAGED_MODELS": ".models",
    "PROMPTS": ".prompts",
    "load_model": ".models",
    "mteb_model": ".integrations",
    "normalize_sentence": ".prompts",
    "to_sentence_transformer": ".integrations",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import EncoderConfig
    from .corpus import embed_corpus
    from .encoder import Encoder
    from .integrations import mteb_model, to_sentence_transformer
    from .models import PACKAGED_MODELS, LoadedModel, load_model
    from .prompts import PROMPTS, normalize_sentence


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
