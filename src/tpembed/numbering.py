"""The two layer numberings' range rules, without torch (see DESIGN.md, "Two layer numberings").

The levers apply them when an Encoder is built (:mod:`tpembed.levers`); the CLI applies the same
functions with :func:`tpembed.model_files.quick_num_layers` before torch is even imported, so a
layer number the model does not have is one ``error:`` line within a second.
"""

from __future__ import annotations

from typing import Any


def resolve_output_layer(output_layer: int, num_layers: int) -> int:
    """Map an HF hidden_states index (negatives count from the end) to 0..num_layers."""
    if not -(num_layers + 1) <= output_layer <= num_layers:
        raise ValueError(
            f"output_layer={output_layer} is out of range for a model with {num_layers} decoder "
            f"layers: use 0..{num_layers} (0 = embeddings, {num_layers} = final normed output) "
            f"or -{num_layers + 1}..-1"
        )
    return output_layer if output_layer >= 0 else num_layers + 1 + output_layer


def check_tp_range(config: Any, num_layers: int) -> None:
    """TP's decoder-layer range ``[tp_starting_index, tp_exiting_index)`` fits the model."""
    if config.tp_exiting_index > num_layers:
        raise ValueError(
            f"tp_exiting_index={config.tp_exiting_index} is beyond {config.model}'s {num_layers} decoder "
            f"layers (TP runs before layers [tp_starting_index, tp_exiting_index), 0-based)"
        )


def check_cp_layer(config: Any, num_layers: int) -> None:
    """Contrastive Prompting's decoder layer exists."""
    if config.cp_layer >= num_layers:
        raise ValueError(f"cp_layer={config.cp_layer} is beyond {config.model}'s {num_layers} decoder layers (0-based)")


def check_numbering(config: Any, num_layers: int) -> None:
    """Every layer number of ``config`` (an EncoderConfig) against a model of ``num_layers`` decoder layers."""
    for layer in config.output_layers():
        resolve_output_layer(layer, num_layers)
    if config.use_which_plan == "tp":
        check_tp_range(config, num_layers)
    if config.cp_layer is not None:
        check_cp_layer(config, num_layers)
