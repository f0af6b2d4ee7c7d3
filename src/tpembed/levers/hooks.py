"""What every lever's hooks share: reading a decoder layer's hidden states, finding the attention
output projection without model-family names, and stopping a forward pass early.

HF ``hidden_states`` numbering: index k < L is the input of decoder layer k (0 = embeddings),
index L is the final normed output. A pre-hook on layer k therefore sees ``hidden_states[k]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class StopForward(Exception):
    """Raised from a hook to end the forward pass once every needed state is captured."""


def hidden_states_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a decoder layer is called with, positional or keyword."""
    return args[0] if args else kwargs["hidden_states"]


def replace_hidden_states(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    """The layer's call arguments with ``hidden`` in place of its hidden states."""
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _attention_module(layer: nn.Module) -> nn.Module:
    """The layer's self-attention block: the child whose name says attention (self_attn, attention ...)."""
    for name, child in layer.named_children():
        lowered = name.lower()
        if "attn" in lowered or "attention" in lowered:
            return child
    raise ValueError(
        f"cannot find an attention block in {type(layer).__name__} (no child named *attn* / *attention*): "
        "this lever needs one"
    )


def _is_linear(module: nn.Module) -> bool:
    """A linear layer: ``nn.Linear``, or a module that stands in for one (torch.ao's quantized Linear has no
    nn.Linear base but the same ``in_features``/``out_features``) and holds no other such module."""
    def linear_like(m: nn.Module) -> bool:
        return hasattr(m, "in_features") and hasattr(m, "out_features")

    return isinstance(module, nn.Linear) or (
        linear_like(module) and not any(linear_like(m) for m in module.modules() if m is not module)
    )


def output_projection(layer: nn.Module, hidden_size: int) -> nn.Module:
    """The attention output projection of one decoder layer, found without model-family names.

    It is the attention block's last linear layer that maps back to the residual stream
    (``out_features == hidden_size``): q/k/v come first in every HF attention module. Only hooks
    go on it, so a quantized stand-in for nn.Linear serves as well.
    """
    candidates = [
        m for m in _attention_module(layer).modules() if _is_linear(m) and m.out_features == hidden_size
    ]
    if not candidates:
        raise ValueError(f"no Linear with out_features={hidden_size} in {type(layer).__name__}'s attention block")
    return candidates[-1]


@contextmanager
def installed(handles: Sequence[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    """Remove the hooks behind ``handles`` when the block ends, however it ends."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_until(
    model: nn.Module, layers: Sequence[nn.Module], inputs: Mapping[str, Any], depth: int
) -> Any | None:
    """Run ``model`` only through decoder layers ``0..depth-1`` (early exit).

    ``depth == len(layers)`` runs the whole decoder and returns its output (``last_hidden_state``
    is ``hidden_states[L]``); a smaller depth stops before layer ``depth`` and returns None, so no
    later layer, no final norm and no lm_head ever run. Hooks that capture states are the callers'.
    """

    def stop(module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise StopForward

    handles = [layers[depth].register_forward_pre_hook(stop, with_kwargs=True)] if depth < len(layers) else []
    with installed(handles):
        try:
            # no cache unless the caller brings one (a cached prompt prefix)
            return model(**{"use_cache": False, **inputs})
        except StopForward:
            return None
