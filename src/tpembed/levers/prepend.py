"""Token Prepending: the <PST> token and the layer pre-hooks that feed it the sentence summary.

Before each decoder layer i in [start, exit), row b's <PST> hidden state is replaced by row b's
last-token hidden state (the input of layer i, i.e. the output of layer i-1). Later tokens of the
sentence then attend to a summary of the whole sentence. The model itself is never changed:
forward pre-hooks do the work and are always removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from transformers import AddedToken, PreTrainedModel, PreTrainedTokenizerBase

from ..numbering import check_tp_range
from ..prompts import PLACEHOLDER_TOKEN
from .base import Batch, Lever
from .hooks import hidden_states_arg, installed, replace_hidden_states

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
        return replace_hidden_states(args, kwargs, hidden)

    handles = [
        layers[i].register_forward_pre_hook(copy_last_into_pst, with_kwargs=True) for i in range(start, exit)
    ]
    with installed(handles):
        yield


class TokenPrepending(Lever):
    """``use_which_plan: tp``: <PST> in every prompt, rewritten before layers [start, exit)."""

    order = 10
    uses_placeholder = True

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config.use_which_plan == "tp"

    def validate(self) -> None:
        check_tp_range(self.config, self.num_layers)

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "tp": [config.tp_starting_index, config.tp_exiting_index],
            "pst_init": config.pst_init,
            "seed": config.seed,
        }

    def warning(self, first_output_index: int) -> str | None:
        config = self.config
        if config.tp_exiting_index == config.tp_starting_index:
            return (
                f"the TP range [{config.tp_starting_index}, {config.tp_exiting_index}) is empty: <PST> is inserted "
                "but never rewritten (use use_which_plan='vanilla' for no TP)"
            )
        if first_output_index <= config.tp_starting_index:
            return (
                f"output_layer={config.output_layer} is read before TP's first layer "
                f"(tp_starting_index={config.tp_starting_index}) runs: TP cannot change these embeddings"
            )
        return None

    def attach(self, loaded: Any, hidden_size: int) -> None:
        self.layers, self.model = loaded.layers, loaded.model
        self.token_id = add_placeholder_token(
            loaded.model, loaded.tokenizer, init=self.config.pst_init, seed=self.config.seed
        )
        self.row = self.model.get_input_embeddings().weight[self.token_id].detach().clone()

    @contextmanager
    def batch_hooks(self, batch: Batch) -> Iterator[None]:
        # this encoder's <PST> embedding: another encoder of the shared model may have set its own
        weight = self.model.get_input_embeddings().weight
        with torch.no_grad():
            weight[self.token_id] = self.row
        assert batch.pst_index is not None
        with token_prepending(self.layers, batch.pst_index, self.config.tp_starting_index, self.config.tp_exiting_index):
            yield
