"""The levers: training-free interventions the Encoder composes, each behind one small interface
(:class:`~tpembed.levers.base.Lever`). Every module of this package is imported here, so a new
lever is one new file whose class says when it is ``enabled`` (see README, "Adding a lever").
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from .base import REGISTRY, Batch, Call, Lever, Pooling

if TYPE_CHECKING:
    from ..config import EncoderConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_levers(config: EncoderConfig, num_layers: int) -> list[Lever]:
    """The levers these settings turn on, checked against ``num_layers`` decoder layers, in hook order.

    Exactly one of them is a :class:`Pooling` (``config.pooling``).
    """
    levers = [cls(config, num_layers) for cls in REGISTRY if cls.enabled(config)]
    poolings = [lever for lever in levers if isinstance(lever, Pooling)]
    if len(poolings) != 1:
        known = sorted(cls.pooling for cls in REGISTRY if issubclass(cls, Pooling))
        raise ValueError(f"pooling={config.pooling!r} is not one of {known}")
    return levers


def check_layers(config: EncoderConfig, num_layers: int) -> None:
    """The settings against a model with ``num_layers`` decoder layers: the one layer check, the same
    before loading (with :func:`~tpembed.models.model_num_layers`) and in the Encoder."""
    build_levers(config, num_layers)


__all__ = ["Batch", "Call", "Lever", "Pooling", "REGISTRY", "build_levers", "check_layers"]
