"""The mean pooling baseline: the mean of the sentence tokens' states at the output layer.

Many papers report it beside last-token pooling (e.g. PromptEOL, arXiv 2307.16645, and Echo
embeddings, arXiv 2402.15449). Only the tokens of the sentence are averaged, not the prompt around
it: a token belongs to the sentence when its characters overlap the sentence's in the rendered
prompt. Under causal attention early tokens never see later ones, so TP's summary in ``<PST>``
reaches every sentence token, not only the last; the two compose. Contrastive Prompting edits the
last token only, so it leaves a mean unchanged (a warning says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..prompts import render
from .base import Batch, Pooling
from .hooks import hidden_states_arg, installed


class MeanPooling(Pooling):
    """``pooling: mean``: the mean over the sentence's tokens of ``hidden_states[k]``."""

    pooling = "mean"

    def attach(self, loaded: Any, hidden_size: int) -> None:
        self.tokenizer = loaded.tokenizer

    def warning(self, first_output_index: int) -> str | None:
        if self.config.cp_layer is not None:
            return (
                "Contrastive Prompting edits only the prompt's last token, which is not a sentence token: "
                "it cannot change a mean-pooled embedding (use pooling='last_token' with cp_layer)"
            )
        return None

    @contextmanager
    def capture(self, batch: Batch, layers: list[nn.Module], indices: list[int]) -> Iterator[dict[int, Any]]:
        captured: dict[int, torch.Tensor] = {}

        def make_hook(k: int):
            def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
                captured[k] = hidden_states_arg(args, kwargs)

            return keep

        handles = [layers[k].register_forward_pre_hook(make_hook(k), with_kwargs=True) for k in indices if k < len(layers)]
        with installed(handles):
            yield captured

    def read(self, captured: dict[int, Any], output: Any, batch: Batch, indices: list[int]) -> dict[int, torch.Tensor]:
        if output is not None:
            captured[self.num_layers] = output.last_hidden_state
        width = batch.inputs["input_ids"].shape[1]
        mask = torch.zeros((len(batch.prompts), width), dtype=torch.float32)
        for row, (prompt, sentence) in enumerate(zip(batch.prompts, batch.sentences)):
            first, stop = self._sentence_span(batch.template, sentence, prompt.ids, batch.pst_index is not None)
            first = max(first, batch.prefix_length)  # a cached prefix is not in the states (it never holds the sentence)
            # left padding: prompt position p sits at column width - (len(ids) - p)
            mask[row, width - (len(prompt.ids) - first) : width - (len(prompt.ids) - stop)] = 1.0
        out = {}
        for k in indices:
            states = captured[k].float()
            weights = mask.to(states.device)[..., None]
            out[k] = (states * weights).sum(dim=1) / weights.sum(dim=1)
        return out

    def _sentence_span(self, template: str, sentence: str, ids: tuple[int, ...], placeholder: bool) -> tuple[int, int]:
        """Token positions ``[first, stop)`` of the sentence in the prompt's ids (at least the last token)."""
        prompt = render(template, sentence, use_placeholder=placeholder)
        encoded = self.tokenizer(prompt.text, add_special_tokens=True, return_offsets_mapping=True)
        if tuple(encoded["input_ids"]) == ids:
            inside = [
                i for i, (a, b) in enumerate(encoded["offset_mapping"])
                if b > a and a < prompt.sentence_end and b > prompt.sentence_start
            ]
            if inside:
                return inside[0], inside[-1] + 1
        else:  # tokenized in parts (a special text in the sentence) or truncated: count the parts
            head = len(self.tokenizer(prompt.text[: prompt.sentence_start], add_special_tokens=True)["input_ids"])
            tail = len(self.tokenizer(prompt.text[prompt.sentence_end :], add_special_tokens=False)["input_ids"])
            if head < len(ids) - tail:
                return head, len(ids) - tail
        return len(ids) - 1, len(ids)  # no sentence token (an empty sentence): the last token
