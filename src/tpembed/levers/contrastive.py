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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from .early_exit import StopForward

CpMode = Literal["ns", "nr"]

#: The paper's auxiliary prompt, with the TP placeholder slot where the main prompts have it.
AUX_TEMPLATE = 'The irrelevant information of this sentence : {placeholder}"{sentence}" means in one word:"'

_EPS = 1e-7  # as in the reference code: keeps nr finite when v == v_aux


def _attention_module(layer: nn.Module) -> nn.Module:
    """The layer's self-attention block: the child whose name says attention (self_attn, attention ...)."""
    for name, child in layer.named_children():
        lowered = name.lower()
        if "attn" in lowered or "attention" in lowered:
            return child
    raise ValueError(
        f"cannot find an attention block in {type(layer).__name__} (no child named *attn* / *attention*): "
        "Contrastive Prompting needs one"
    )


def output_projection(layer: nn.Module, hidden_size: int) -> nn.Linear:
    """The attention output projection of one decoder layer, found without model-family names.

    It is the attention block's last ``nn.Linear`` that maps back to the residual stream
    (``out_features == hidden_size``): q/k/v come first in every HF attention module.
    """
    candidates = [
        m for m in _attention_module(layer).modules() if isinstance(m, nn.Linear) and m.out_features == hidden_size
    ]
    if not candidates:
        raise ValueError(f"no Linear with out_features={hidden_size} in {type(layer).__name__}'s attention block")
    return candidates[-1]


def contrastive_update(v: torch.Tensor, v_aux: torch.Tensor, alpha: float, mode: CpMode) -> torch.Tensor:
    """The new last-token input of the output projection (rows of ``v`` and ``v_aux`` align)."""
    diff = v - v_aux
    if mode == "ns":
        return alpha * diff
    if mode == "nr":
        scale = v.norm(dim=-1, keepdim=True) / (diff.norm(dim=-1, keepdim=True) + _EPS)
        return alpha * diff * scale
    raise ValueError(f"cp_mode must be 'ns' or 'nr', got {mode!r}")


def projection_input(model: nn.Module, projection: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` only until ``projection`` is reached; return its input at the last token ``(batch, dim)``."""
    captured: list[torch.Tensor] = []

    def capture(module: nn.Module, args: tuple) -> None:
        captured.append(args[0][:, -1].clone())
        raise StopForward

    handle = projection.register_forward_pre_hook(capture)
    try:
        model(**{"use_cache": False, **inputs})
    except StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("the forward pass never reached the attention output projection")
    return captured[0]


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

    handle = projection.register_forward_pre_hook(edit)
    try:
        yield
    finally:
        handle.remove()
