"""tpembed: training-free sentence embeddings from decoder-only LLMs with Token Prepending.

The public names are imported on first use, so ``import tpembed`` (and the ``tpembed`` command's
start-up, its checks and its errors) do not wait for torch and transformers to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS = {
    "Encoder": ".encoder",
    "EncoderConfig": ".config",
    "LoadedModel": ".models",
    "PACKAGED_MODELS": ".models",
    "PROMPTS": ".prompts",
    "load_model": ".models",
    "normalize_sentence": ".prompts",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import EncoderConfig
    from .encoder import Encoder
    from .models import PACKAGED_MODELS, LoadedModel, load_model
    from .prompts import PROMPTS, normalize_sentence


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tpembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
