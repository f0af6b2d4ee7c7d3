"""Token Prepending: the <PST> token and the layer pre-hooks that feed it the sentence summary.

Before each decoder layer i in [start, exit), row b's <PST> hidden state is replaced by row b's
last-token hidden state (the input of layer i, i.e. the output of layer i-1). Later tokens of the
sentence then attend to a summary of the whole sentence. The model itself is never changed:
forward pre-hooks do the work and are always removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from transformers import AddedToken, PreTrainedModel, PreTrainedTokenizerBase

from ..prompts import PLACEHOLDER_TOKEN

PstInit = Literal["gaussian", "zeros"]


def add_placeholder_token(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, init: PstInit = "gaussian", seed: int = 0
) -> int:
    """Add <PST> as a special token and give it a deterministic input embedding; return its id.

    Like the paper, the default embedding is a standard Gaussian draw (here seeded, so runs agree);
    ``zeros`` is the alternative. The embedding matrix grows only when the new id does not fit.
    """
    if init not in ("gaussian", "zeros"):
        raise ValueError(f"pst_init must be 'gaussian' or 'zeros', got {init!r}")
    tokenizer.add_tokens([AddedToken(PLACEHOLDER_TOKEN, special=True, normalized=False)], special_tokens=True)
    token_id = tokenizer.convert_tokens_to_ids(PLACEHOLDER_TOKEN)
    embeddings = model.get_input_embeddings()
    if token_id >= embeddings.weight.shape[0]:
        model.resize_token_embeddings(token_id + 1, mean_resizing=False)
        embeddings = model.get_input_embeddings()
    weight = embeddings.weight
    if init == "gaussian":
        generator = torch.Generator().manual_seed(seed)
        row = torch.randn(weight.shape[1], generator=generator, dtype=torch.float32)
    else:
        row = torch.zeros(weight.shape[1])
    with torch.no_grad():
        weight[token_id] = row.to(device=weight.device, dtype=weight.dtype)
    return token_id


def hidden_states_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a decoder layer is called with, positional or keyword."""
    return args[0] if args else kwargs["hidden_states"]


def _replace_hidden_states(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@contextmanager
def token_prepending(
    layers: Sequence[nn.Module], pst_index: torch.Tensor, start: int, exit: int
) -> Iterator[None]:
    """Install the TP pre-hooks on ``layers[start:exit]`` for one batch; always remove them.

    ``pst_index[b]`` is the position of row b's <PST> token; inputs are left-padded, so row b's
    last token is at position -1.
    """
    index_on: dict[torch.device, torch.Tensor] = {}

    def copy_last_into_pst(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = hidden_states_arg(args, kwargs)
        if hidden.device not in index_on:
            index_on[hidden.device] = pst_index.to(hidden.device)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        hidden = hidden.clone()  # the caller's tensor may be kept elsewhere (e.g. as a layer output)
        hidden[rows, index_on[hidden.device]] = hidden[:, -1].clone()
        return _replace_hidden_states(args, kwargs, hidden)

    handles = [
        layers[i].register_forward_pre_hook(copy_last_into_pst, with_kwargs=True) for i in range(start, exit)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
