"""Shared-prefix key/value cache: run a template's fixed opening once, reuse it for every batch.

Every prompt of one template starts with the same text (``This sentence : `` before ``<PST>``
under TP, ``This sentence : "`` before the sentence under the vanilla plan; the KE and MetaEOL
openings are 30-70 tokens, longer than most sentences). Under causal attention those positions never see what follows, and
TP only rewrites the ``<PST>`` position, so their keys/values are the same for every sentence. We
compute them once (one row), then each batch runs only the suffix tokens on top of a copy of them.
The states are kept across calls while the weights they came from are unchanged (see
:class:`PrefixCache`): a k-shot opening is a hundred tokens, a large share of a small call's work.

Correctness rests on the prefix being an *exact* common prefix of every row's token ids (whole
string tokenization can merge across the template/sentence boundary), checked here row by row.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from ..inputs import PromptTokens
from ..prompts import PLACEHOLDER_TOKEN, render
from .base import Lever
from .hooks import run_until


@dataclass(frozen=True)
class PrefixState:
    """Keys/values of a shared prefix: ``(keys, values)`` of decoder layers ``0..depth-1``, batch size 1."""

    ids: tuple[int, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    argument: str = "past_key_values"  # the forward's cache keyword
    span: int | None = None  # the model's shortest local-attention window (None: none)

    @property
    def length(self) -> int:
        return len(self.ids)

    def fits(self, width: int) -> bool:
        """Whether a batch whose longest prompt has ``width`` tokens may use the prefix: padding sits
        between prefix and suffix, which would skew a sliding window the batch does not fit in."""
        return self.span is None or width <= self.span

    def model_inputs(self, batch_size: int) -> dict[str, Any]:
        """The cache arguments of one forward batch of ``batch_size`` rows."""
        # each layer attends to prefix + suffix; nothing is kept after the layer (see PrefixLayer)
        return {self.argument: batch_cache(self, batch_size), "use_cache": True}


def template_prefix_ids(tokenizer: PreTrainedTokenizerBase, template: str, use_placeholder: bool) -> list[int]:
    """Token ids of the template's text before ``<PST>`` (TP) or before the sentence (vanilla).

    Only a candidate: :func:`shared_prefix_length` checks it against the real rows.
    """
    prompt = render(template, "", use_placeholder=use_placeholder)
    head = prompt.text[: prompt.sentence_start]
    if use_placeholder and PLACEHOLDER_TOKEN in head:
        head = head[: head.index(PLACEHOLDER_TOKEN)]
    return list(tokenizer(head, add_special_tokens=True)["input_ids"])


def shared_prefix_length(candidate: Sequence[int], prompts: Sequence[PromptTokens]) -> int:
    """How many leading ids of ``candidate`` every row shares exactly (0: no usable prefix).

    The prefix also stops at each row's ``<PST>`` (TP rewrites that position, so it cannot be
    shared) and leaves at least one token in every row, the one whose state is the embedding.
    """
    n = len(candidate)
    for p in prompts:
        limit = min(n, len(p.ids) - 1, n if p.pst_index is None else p.pst_index)
        k = 0
        while k < limit and p.ids[k] == candidate[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


def _text_config(config: object) -> object:
    """The decoder's own config (multimodal configs nest it)."""
    get_text = getattr(config, "get_text_config", None)
    return get_text(decoder=True) if callable(get_text) else config


def attention_span(config: object) -> int | None:
    """The shortest local-attention window of the model (sliding window / chunk), None if none.

    Attention masks index the cache by slot, and with a cached prefix the left padding sits
    between prefix and suffix, so slot distances exceed position distances. That is harmless
    while a whole batch (prefix + padded suffix) fits inside every window; beyond that we run
    without the cache.
    """
    text_config = _text_config(config)
    spans = [getattr(text_config, name, None) for name in ("sliding_window", "attention_chunk_size")]
    spans = [s for s in spans if isinstance(s, int) and s > 0]
    return min(spans) if spans else None


# Layer kinds whose cache is plain keys/values (what a config-free DynamicCache holds).
_KV_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention"}


def supports_prefix_cache(config: object) -> bool:
    """False for models with non-attention layers (linear attention, SSM blocks): their caches
    hold recurrent state, not per-token keys/values, so a plain prefix cache does not apply."""
    layer_types = getattr(_text_config(config), "layer_types", None) or []
    return all(t in _KV_LAYER_TYPES for t in layer_types)


def cache_argument(model: torch.nn.Module) -> str:
    """Name of the forward's cache keyword: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def compute_prefix(
    model: PreTrainedModel, layers: Sequence[torch.nn.Module], ids: Sequence[int], depth: int
) -> PrefixState:
    """Run the prefix once (one row) through decoder layers ``0..depth-1`` and keep their keys/values.

    ``depth`` is the deepest hidden_states index the batches will capture: they stop before layer
    ``depth`` too (early exit), so no deeper layer ever needs the prefix. The caller runs this
    under ``torch.inference_mode()`` with no TP hooks installed.
    """
    device = next(model.parameters()).device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    cache = DynamicCache()  # grows one plain layer per decoder layer that runs
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "position_ids": torch.arange(len(ids), device=device)[None],
        "use_cache": True,
        cache_argument(model): cache,
    }
    run_until(model, layers, inputs, depth)
    kept = tuple((layer.keys, layer.values) for layer in cache.layers[:depth])
    if len(kept) != min(depth, len(layers)) or any(k is None or k.shape[-2] != len(ids) for k, _ in kept):
        raise RuntimeError(f"the prefix forward did not leave {len(ids)} cached tokens in each of {depth} layers")
    return PrefixState(tuple(ids), kept, cache_argument(model), attention_span(model.config))


_LAZY_INIT_ARGS = len(inspect.signature(DynamicLayer.lazy_initialization).parameters) - 1  # but self


class PrefixLayer(DynamicLayer):
    """One decoder layer's cache during an encoding forward: the shared prefix, and nothing more.

    ``update`` hands the layer prefix + the batch's new keys/values but does not keep them: nothing
    reads them after the layer's attention (no token is generated), and keeping them (a plain
    ``DynamicLayer``) holds every layer's keys/values of the whole batch until the forward ends —
    memory growing with depth x batch tokens, about twice the forward's own peak at 64 rows. The prefix
    stays a broadcast view of the one-row states (never copied per row). The cache's length stays
    the prefix's, which is what mask sizes and positions are computed from.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.lazy_initialization(*(keys, values)[:_LAZY_INIT_ARGS])  # transformers < 5 takes the keys only
        self.keys, self.values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def batch_cache(prefix: PrefixState, batch_size: int) -> DynamicCache:
    """A cache holding the prefix for ``batch_size`` rows, one :class:`PrefixLayer` per computed layer.

    Plain layers (no sliding-window trimming) are exact here because the encoder only uses the cache
    while prefix + suffix fit every window (see :func:`attention_span`).
    """
    cache = DynamicCache()
    cache.layers = [PrefixLayer(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                    for k, v in prefix.layers]
    return cache


_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensor types whose storage holds the weights themselves
_SAMPLED = 8  # values read from every weight tensor (evenly strided)


@dataclass(frozen=True)
class WeightsStamp:
    """What a model's weights are now, as far as a cheap look can tell (a few ms per call)."""

    versions: tuple[tuple[int, int, int], ...]  # identity, storage address, version counter
    sample: torch.Tensor  # a few values of every tensor

    def matches(self, other: WeightsStamp) -> bool:
        return self.versions == other.versions and torch.equal(self.sample, other.sample)


def weights_stamp(model: torch.nn.Module, skip: torch.Tensor) -> WeightsStamp | None:
    """A stamp of every parameter and buffer but ``skip``, which changes when one is replaced or written.

    The version counter sees every in-place write through the tensor (an optimizer step,
    ``load_state_dict``); a write through ``.data`` bumps no counter (PEFT merges LoRA weights that
    way), so a few values of each tensor are compared too: a dense change (a merged adapter, a
    checkpoint copied in) moves them. A sparse edit through ``.data`` between calls is not seen:
    use ``prefix_cache=False`` there. None where the stamp cannot see the weights: tensors without
    a version counter (made under ``torch.inference_mode``), tensor subclasses (torchao's int8 weights
    wrap their data), weights packed outside parameters (torch.ao's quantized modules).
    """
    tensors = [t for t in chain(model.parameters(), model.buffers()) if t is not skip]
    if any(type(t) not in _PLAIN or t.is_inference() for t in tensors):
        return None
    if any(hasattr(m, "_packed_params") for m in model.modules()):
        return None
    versions = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    sample = torch.cat([t.detach().reshape(-1)[:: max(1, t.numel() // _SAMPLED)].float() for t in tensors])
    return WeightsStamp(versions, sample)


@dataclass(frozen=True)
class _Kept:
    """A prefix state and what it was computed from."""

    stamp: WeightsStamp  # the weights but the input embeddings
    rows: torch.Tensor  # the input embeddings of the prefix's ids
    state: PrefixState


class PrefixCache(Lever):
    """``prefix_cache``: every template's shared opening runs once (one row), and each batch runs only
    its suffixes on top of it. Changes no vector beyond float noise (1e-4).

    Prefix states are kept across calls, so a small call (a server round, a sentence-transformers
    batch) does not pay for a k-shot opening again. A kept state is used only while the weights are
    those it was computed from: every parameter and buffer unchanged (:func:`weights_stamp`) but the
    input embeddings, of which only the prefix's own rows count. Those are compared by value because
    Token Prepending writes its ``<PST>`` row into that matrix before each batch.
    """

    order = 0
    max_states = 16  # least recently used dropped beyond it: one per template and depth (MetaEOL + CP: 9)

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return bool(config.prefix_cache)

    def attach(self, loaded: Any, hidden_size: int) -> None:
        self.loaded = loaded
        self.supported = supports_prefix_cache(loaded.model.config)
        self.span = attention_span(loaded.model.config)
        self.states: OrderedDict[tuple[tuple[int, ...], int], _Kept] = OrderedDict()

    def prefix(self, template: str, prompts: list[PromptTokens], depth: int) -> PrefixState | None:
        """The prefix state of these prompts, kept or computed (one row through ``depth`` layers).
        The caller holds the model's lock, which also guards the kept states."""
        if not self.supported or depth == 0 or not prompts:  # depth 0: the embeddings, no attention to save
            return None
        use_placeholder = prompts[0].pst_index is not None
        candidate = template_prefix_ids(self.loaded.tokenizer, template, use_placeholder)
        length = shared_prefix_length(candidate, prompts)
        if length == 0 or (self.span is not None and length >= self.span):
            return None
        return self._state(tuple(candidate[:length]), depth)

    def _state(self, ids: tuple[int, ...], depth: int) -> PrefixState:
        model = self.loaded.model
        embeddings = model.get_input_embeddings().weight
        stamp = weights_stamp(model, skip=embeddings)
        rows = embeddings[torch.tensor(ids, device=embeddings.device)]
        key = (ids, depth)
        kept = self.states.get(key)
        if stamp is not None and kept is not None and kept.stamp.matches(stamp) and torch.equal(kept.rows, rows):
            self.states.move_to_end(key)
            return kept.state
        state = compute_prefix(model, self.loaded.layers, ids, depth)
        if stamp is not None:
            self.states[key] = _Kept(stamp, rows, state)
            while len(self.states) > self.max_states:  # least recently used first
                self.states.popitem(last=False)
        return state
