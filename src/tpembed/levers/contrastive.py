"""Contrastive Prompting (Cheng et al. 2025, arXiv 2505.12831) as two small hooks.

An auxiliary prompt asks for the sentence's *irrelevant* information. At decoder layer ``l`` the
input of the attention output projection (the heads' concatenated values, before ``o_proj``) is
read at the auxiliary prompt's last token (``v_aux``); in the normal prompt's pass the same input
at its last token, ``v``, is replaced by

- ``ns``: ``alpha * (v - v_aux)``
- ``nr``: ``alpha * (v - v_aux) * ||v|| / ||v - v_aux||`` (the norm of ``v`` is kept)

so the summary token attends away from what the auxiliary prompt finds. Only that one position
of that one layer changes; the model is never modified and the hooks are always removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from ..numbering import check_cp_layer
from .base import Batch, Call, Lever
from .hooks import StopForward, installed, output_projection

CpMode = Literal["ns", "nr"]

#: The paper's auxiliary prompt, with the TP placeholder slot where the main prompts have it.
AUX_TEMPLATE = 'The irrelevant information of this sentence : {placeholder}"{sentence}" means in one word:"'

_EPS = 1e-7  # as in the reference code: keeps nr finite when v == v_aux


def contrastive_update(v: torch.Tensor, v_aux: torch.Tensor, alpha: float, mode: CpMode) -> torch.Tensor:
    """The new last-token input of the output projection (rows of ``v`` and ``v_aux`` align)."""
    diff = v - v_aux
    if mode == "ns":
        return alpha * diff
    if mode == "nr":
        scale = v.norm(dim=-1, keepdim=True) / (diff.norm(dim=-1, keepdim=True) + _EPS)
        return alpha * diff * scale
    raise ValueError(f"cp_mode must be 'ns' or 'nr', got {mode!r}")


@contextmanager
def capture_projection_input(projection: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of ``projection`` at the last token ``(batch, dim)``, then stop the forward."""
    captured: list[torch.Tensor] = []

    def capture(module: nn.Module, args: tuple) -> None:
        captured.append(args[0][:, -1].clone())
        raise StopForward

    with installed([projection.register_forward_pre_hook(capture)]):
        yield captured


@contextmanager
def contrastive_prompting(
    projection: nn.Module, v_aux: torch.Tensor, alpha: float, mode: CpMode
) -> Iterator[None]:
    """Replace the last token's input of ``projection`` by the contrastive update for one batch."""

    def edit(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0].clone()  # never write into a tensor the model may keep
        aux = v_aux.to(device=hidden.device, dtype=hidden.dtype)
        hidden[:, -1] = contrastive_update(hidden[:, -1], aux, alpha, mode)
        return (hidden, *args[1:])

    with installed([projection.register_forward_pre_hook(edit)]):
        yield


class ContrastivePrompting(Lever):
    """``cp_layer``: each call first runs the auxiliary prompt up to that layer (``v_aux`` per
    sentence), then every batch gets the contrastive update at that layer's output projection."""

    order = 20
    extra_templates = (AUX_TEMPLATE,)

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config.cp_layer is not None

    def validate(self) -> None:
        check_cp_layer(self.config, self.num_layers)

    def identity(self) -> dict[str, Any]:
        return {"cp": [self.config.cp_layer, self.config.cp_alpha, self.config.cp_mode]}

    def warning(self, first_output_index: int) -> str | None:
        if first_output_index <= self.config.cp_layer:
            return (
                f"output_layer={self.config.output_layer} is read before Contrastive Prompting's layer "
                f"(cp_layer={self.config.cp_layer}) has run: CP cannot change these embeddings"
            )
        return None

    def attach(self, loaded: Any, hidden_size: int) -> None:
        self.projection = output_projection(loaded.layers[self.config.cp_layer], hidden_size)

    def before_batches(self, call: Call, depth: int) -> None:
        """``v_aux``: one row per sentence (the same for every template of an ensemble)."""
        group = call.tokenize(AUX_TEMPLATE, call.sentences)
        values: torch.Tensor | None = None

        def read(batch: Batch, run: Any) -> None:
            nonlocal values
            with capture_projection_input(self.projection) as captured:
                run()
            if not captured:
                raise RuntimeError("the forward pass never reached the attention output projection")
            if values is None:
                values = captured[0].new_empty((len(group), captured[0].shape[-1]))
            values[batch.rows] = captured[0]

        # through the projection's layer: the prefix is needed up to and including it
        call.run_group(AUX_TEMPLATE, group, self.config.cp_layer + 1, read, skip=self)
        call.state[id(self)] = values

    def batch_hooks(self, batch: Batch) -> Any:
        v_aux = batch.call.state[id(self)][batch.rows]
        return contrastive_prompting(self.projection, v_aux, self.config.cp_alpha, self.config.cp_mode)
