"""The default pooling: the hidden state of the prompt's last token at each output layer.

A pre-hook on decoder layer k reads ``hidden_states[k]`` at the last position; index L (the final
normed output) comes from the model's output. The forward stops after the deepest layer needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .base import Batch, Pooling
from .hooks import hidden_states_arg, installed


@contextmanager
def last_token_capture(layers: list[nn.Module], indices: list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Collect ``{k: hidden_states[k][:, -1]}`` for each index k below the layer count."""
    captured: dict[int, torch.Tensor] = {}

    def make_hook(k: int):
        def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured[k] = hidden_states_arg(args, kwargs)[:, -1]

        return capture

    handles = [
        layers[k].register_forward_pre_hook(make_hook(k), with_kwargs=True) for k in sorted(set(indices)) if k < len(layers)
    ]
    with installed(handles):
        yield captured


class LastToken(Pooling):
    """``pooling: last_token``: ``hidden_states[k][:, -1]`` (the paper's embedding)."""

    pooling = "last_token"

    def capture(self, batch: Batch, layers: list[nn.Module], indices: list[int]) -> Any:
        return last_token_capture(layers, indices)

    def read(self, captured: dict[int, Any], output: Any, batch: Batch, indices: list[int]) -> dict[int, torch.Tensor]:
        if output is not None:
            captured[self.num_layers] = output.last_hidden_state[:, -1]
        return {k: captured[k] for k in sorted(set(indices))}
