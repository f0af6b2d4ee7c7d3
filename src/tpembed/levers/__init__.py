"""The levers: training-free interventions composed by the Encoder."""

from __future__ import annotations

from ..config import EncoderConfig
from .early_exit import resolve_output_layer


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
