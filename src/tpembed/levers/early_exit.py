"""Run a decoder only as far as needed and keep only the last-token states asked for.

HF ``hidden_states`` numbering: index k < L is the input of decoder layer k (0 = embeddings),
index L is the final normed output. A pre-hook on layer k therefore sees ``hidden_states[k]``;
once the deepest requested index is captured the forward pass is stopped by an exception, so no
later layer, no final norm and no lm_head ever run, and no stack of all hidden states is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .prepend import hidden_states_arg


class StopForward(Exception):
    """Raised from a hook to end the forward pass once every needed state is captured."""


def resolve_output_layer(output_layer: int, num_layers: int) -> int:
    """Map an HF hidden_states index (negatives count from the end) to 0..num_layers."""
    if not -(num_layers + 1) <= output_layer <= num_layers:
        raise ValueError(
            f"output_layer={output_layer} is out of range for a model with {num_layers} decoder "
            f"layers: use 0..{num_layers} (0 = embeddings, {num_layers} = final normed output) "
            f"or -{num_layers + 1}..-1"
        )
    return output_layer if output_layer >= 0 else num_layers + 1 + output_layer


def last_token_states(
    base_model: nn.Module,
    layers: Sequence[nn.Module],
    inputs: Mapping[str, torch.Tensor],
    indices: Sequence[int],
) -> dict[int, torch.Tensor]:
    """Return ``{k: hidden_states[k][:, -1]}`` for each resolved index k, stopping early."""
    num_layers = len(layers)
    wanted = sorted(set(indices))
    deepest = wanted[-1]
    captured: dict[int, torch.Tensor] = {}

    def make_hook(k: int):
        def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured[k] = hidden_states_arg(args, kwargs)[:, -1]
            if k == deepest:
                raise StopForward

        return capture

    handles = [
        layers[k].register_forward_pre_hook(make_hook(k), with_kwargs=True) for k in wanted if k < num_layers
    ]
    try:
        # no cache unless the caller brings one (a cached prompt prefix)
        output = base_model(**{"use_cache": False, **inputs})
        captured[num_layers] = output.last_hidden_state[:, -1]
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return {k: captured[k] for k in wanted}
