"""Layer aggregation of attention outputs: the sum over layers of the last token's attention output.

Each decoder layer adds its self-attention output (the output projection's result) to the residual
stream. Summing that contribution at the last token over layers ``0..k-1`` gives an embedding that
skips the MLPs' share of the stream (arXiv 2602.01572, as rerun in 2605.29751). Forward hooks on
each layer's output projection (found as for Contrastive Prompting) collect it; the model is never
changed and the hooks are always removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .base import Batch, Pooling
from .hooks import installed, output_projection


@contextmanager
def attention_outputs(layers: Sequence[nn.Module], hidden_size: int) -> Iterator[dict[int, torch.Tensor]]:
    """Collect ``{i: last-token attention output of decoder layer i}`` for the layers that run."""
    collected: dict[int, torch.Tensor] = {}

    def make_hook(i: int):
        def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            collected[i] = output[:, -1].float()

        return keep

    handles = [output_projection(layer, hidden_size).register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    with installed(handles):
        yield collected


def cumulative_sums(collected: dict[int, torch.Tensor], indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{k: sum of layers 0..k-1}`` for each HF index k (k = 0 is a zero vector)."""
    missing = [i for i in range(max(indices)) if i not in collected]
    if missing:
        raise RuntimeError(f"attention outputs of layers {missing} were not collected")
    first = next(iter(collected.values()))
    running, out = torch.zeros_like(first), {}
    for i in range(max(indices) + 1):
        if i in indices:
            out[i] = running.clone()
        if i < max(indices):
            running = running + collected[i]
    return out


class AttentionSum(Pooling):
    """``pooling: attention_sum``: the sum of the last token's attention outputs over layers 0..k-1."""

    pooling = "attention_sum"

    def attach(self, loaded: Any, hidden_size: int) -> None:
        self.hidden_size = hidden_size

    def capture(self, batch: Batch, layers: list[nn.Module], indices: list[int]) -> Any:
        return attention_outputs(layers, self.hidden_size)

    def read(self, captured: dict[int, Any], output: Any, batch: Batch, indices: list[int]) -> dict[int, torch.Tensor]:
        return cumulative_sums(captured, indices)
