"""Loading a model for a tuner: its options are checked against the model's config before the weights."""

from __future__ import annotations

from collections.abc import Callable

from ..config import EncoderConfig
from ..models import LoadedModel, load_checked, model_num_layers
from .candidate import Candidate


def load_for_tuning(
    config: EncoderConfig, fixed: Candidate, check: Callable[[int], object], *, progress: bool = True
) -> LoadedModel:
    """Load ``config.model`` once ``check`` (the tuner's options against a layer count) passed.

    The layer count is read without weights, so options the model cannot run fail in seconds. The
    settings the tuner replaces are set to ``fixed`` (values any model runs) for load_checked's check
    of the rest of the config.
    """
    known = model_num_layers(config.model)
    if known is not None:
        check(known)
    base = config.model_dump(include=set(EncoderConfig.model_fields))  # a RunConfig's task keys are not settings
    return load_checked(fixed.config(base), progress=progress)
