"""tpembed: training-free sentence embeddings from decoder-only LLMs with Token Prepending."""

from .config import EncoderConfig
from .encoder import Encoder
from .models import PACKAGED_MODELS, LoadedModel, load_model
from .prompts import PROMPTS, normalize_sentence

__all__ = [
    "Encoder",
    "EncoderConfig",
    "LoadedModel",
    "PACKAGED_MODELS",
    "PROMPTS",
    "load_model",
    "normalize_sentence",
]
__version__ = "0.1.0"
