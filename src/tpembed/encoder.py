"""The Encoder: sentences in, prompt-based (optionally Token Prepending) embeddings out."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .levers.aggregate import ensemble_mean, layer_mean
from .levers.attention_sum import attention_outputs, cumulative_sums
from .config import EncoderConfig
from .levers.contrastive import AUX_TEMPLATE, contrastive_prompting, output_projection, projection_input
from .levers.early_exit import last_token_states, resolve_output_layer
from .inputs import PromptTokenizer, PromptTokens, collate, plan_batches
from .models import LoadedModel, load_model, prepare_model
from .levers.prefix_cache import (
    PrefixState,
    attention_span,
    batch_cache,
    cache_argument,
    compute_prefix,
    shared_prefix_length,
    supports_prefix_cache,
    template_prefix_ids,
)
from .levers.prepend import add_placeholder_token, token_prepending
from .prompts import PromptMethod, get_prompt_method, normalize_sentence, with_demonstration

_NO_LIMIT = 1_000_000_000


def _validate_sentences(sentences: str | Sequence[str]) -> list[str]:
    """The sentences as a list of valid text, or a ValueError that names the bad value."""
    if isinstance(sentences, str):
        items = [sentences]
    elif isinstance(sentences, (bytes, bytearray, memoryview)):
        raise ValueError(
            f"sentences must be text (a str or a list of str), got {type(sentences).__name__}; "
            "decode it first, e.g. data.decode('utf-8')"
        )
    elif isinstance(sentences, (Mapping, AbstractSet)):
        raise ValueError(
            f"sentences must be a str or an ordered sequence of str (list, tuple, array), got a "
            f"{type(sentences).__name__}: it has no defined order, so the vectors could not be matched to it"
        )
    elif isinstance(sentences, np.ndarray):
        if sentences.ndim != 1:
            raise ValueError(f"an array of sentences must be 1-D, got shape {sentences.shape}")
        items = sentences.tolist()
    else:
        try:
            items = list(sentences)
        except TypeError:
            raise ValueError(
                f"sentences must be a str or a list of str, got {type(sentences).__name__}"
            ) from None
    bad = [(i, type(s).__name__) for i, s in enumerate(items) if not isinstance(s, str)]
    if bad:
        i, kind = bad[0]
        raise ValueError(f"every sentence must be a str; item {i} is {kind} ({len(bad)} such items)")
    for i, s in enumerate(items):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"sentence {i} is not valid Unicode text: it holds a lone surrogate {s[err.start]!r} at "
                f"character {err.start} (text decoded with errors='surrogateescape'?); fix or drop it"
            ) from None
    return items


def _check_batch_size(batch_size: int | None, default: int) -> int:
    """None means the configured default; anything else must be a positive int."""
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int (or None for the default {default}), got {batch_size!r}")
    return int(batch_size)


def _warn_about_odd_settings(config: EncoderConfig, output_index: int, use_tp: bool) -> None:
    """Warn about legal settings that are almost surely mistakes."""
    if output_index == 0:
        warnings.warn(
            f"output_layer={config.output_layer} is hidden_states[0], the input embedding of the prompt's "
            "last token: the same vector for every sentence. Use a later layer (e.g. -1)",
            UserWarning,
            stacklevel=3,
        )
    elif use_tp and config.tp_exiting_index == config.tp_starting_index:
        warnings.warn(
            f"the TP range [{config.tp_starting_index}, {config.tp_exiting_index}) is empty: <PST> is inserted "
            "but never rewritten (use use_which_plan='vanilla' for no TP)",
            UserWarning,
            stacklevel=3,
        )
    elif use_tp and output_index <= config.tp_starting_index:
        warnings.warn(
            f"output_layer={config.output_layer} is read before TP's first layer "
            f"(tp_starting_index={config.tp_starting_index}) runs: TP cannot change these embeddings",
            UserWarning,
            stacklevel=3,
        )
    elif config.cp_layer is not None and output_index <= config.cp_layer:
        warnings.warn(
            f"output_layer={config.output_layer} is read before Contrastive Prompting's layer "
            f"(cp_layer={config.cp_layer}) has run: CP cannot change these embeddings",
            UserWarning,
            stacklevel=3,
        )


class Encoder:
    """Turns a decoder-only LLM into a sentence encoder (PromptEOL & co., with or without TP).

    Settings are the paper's config keys (see :class:`EncoderConfig`)::

        enc = Encoder(model="smollm2-135m", prompt_method="prompteol", use_which_plan="tp",
                      tp_starting_index=1, tp_exiting_index=7, output_layer=-1)
        vectors = enc.encode(["A man is playing a guitar.", "Someone plays music."])

    ``model`` may also be an already loaded :class:`LoadedModel` or a ``PreTrainedModel`` (then
    pass ``tokenizer``). The encoder adds the ``<PST>`` token to that tokenizer and model.
    """

    def __init__(
        self,
        model: str | LoadedModel | PreTrainedModel = "smollm2-135m",
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        config: EncoderConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            if isinstance(model, LoadedModel):
                name = str(model.identity.get("name", "in-memory model"))
            else:
                name = model if isinstance(model, str) else model.name_or_path or type(model).__name__
            config = EncoderConfig(model=name, **settings)
        elif settings:
            config = config.model_copy(update=settings)
            config = EncoderConfig.model_validate(config.model_dump())
        self.config = config
        if isinstance(model, LoadedModel):
            self.loaded = model
        elif isinstance(model, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("pass the model's tokenizer along with an in-memory model")
            self.loaded = prepare_model(model, tokenizer, {"name": type(model).__name__})
        else:
            self.loaded = load_model(config.model, device=config.device, dtype=config.dtype)

        num_layers = self.loaded.num_layers
        self.output_indices = [resolve_output_layer(k, num_layers) for k in config.output_layers()]
        self.output_index = self.output_indices[0]
        self.use_tp = config.use_which_plan == "tp"
        if self.use_tp and config.tp_exiting_index > num_layers:
            raise ValueError(
                f"tp_exiting_index={config.tp_exiting_index} is beyond the model's {num_layers} decoder "
                f"layers (TP runs before layers [tp_starting_index, tp_exiting_index), 0-based)"
            )
        # an ensemble's members, each one or more templates; self.prompt holds all their templates in order
        names = [None] if config.template is not None else config.prompt_methods()
        self.members = [
            with_demonstration(
                get_prompt_method(name or "", config.template, use_placeholder=self.use_tp), config.demonstration
            )
            for name in names
        ]
        self.prompt = (
            self.members[0]
            if len(self.members) == 1
            else PromptMethod(
                "+".join(m.name for m in self.members),
                tuple(t for m in self.members for t in m.templates),
                "ensemble: " + ", ".join(m.name for m in self.members),
            )
        )
        if config.cp_layer is not None and config.cp_layer >= num_layers:
            raise ValueError(
                f"cp_layer={config.cp_layer} is beyond the model's {num_layers} decoder layers (0-based)"
            )
        self._cp_projection = (
            output_projection(self.loaded.layers[config.cp_layer], self.embedding_dim)
            if config.cp_layer is not None
            else None
        )
        _warn_about_odd_settings(config, min(self.output_indices), self.use_tp)
        tok = self.loaded.tokenizer
        self._pst_token_id = None
        with self.loaded.lock:  # adding <PST> changes the shared tokenizer and embedding matrix
            if self.use_tp:
                self._pst_token_id = add_placeholder_token(
                    self.loaded.model, tok, init=config.pst_init, seed=config.seed
                )
                weight = self.loaded.model.get_input_embeddings().weight
                self._pst_row = weight[self._pst_token_id].detach().clone()
            limit = getattr(self.loaded.model.config, "max_position_embeddings", None) or _NO_LIMIT
            self.max_length = min(config.max_length or limit, limit)
            self._tokenize = PromptTokenizer(tok, self._pst_token_id, self.max_length)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_token_id = pad if pad is not None else 0
        self._attention_span = attention_span(self.loaded.model.config)
        self._use_prefix_cache = config.prefix_cache and supports_prefix_cache(self.loaded.model.config)
        self._cache_argument = cache_argument(self.loaded.model)

    @property
    def embedding_dim(self) -> int:
        """Length of one embedding vector (the model's hidden size)."""
        return self.loaded.model.get_input_embeddings().weight.shape[1]

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences (sentence-transformers conventions).

        A single string gives a 1-D vector, a list gives ``(n, dim)`` in input order. Sentences are
        normalised as in the paper, deduplicated, sorted by length into batches and left-padded.
        Returns float32 numpy unless ``convert_to_tensor`` (then a CPU float32 tensor).
        """
        single = isinstance(sentences, str)
        items = _validate_sentences(sentences)
        layers = self.config.output_layers()
        vectors = self.encode_layers(items, layers, batch_size, show_progress_bar)
        result = torch.from_numpy(layer_mean([vectors[k] for k in layers]))
        if normalize_embeddings:
            result = torch.nn.functional.normalize(result, dim=-1)
        if single:
            result = result[0]
        if convert_to_tensor or not convert_to_numpy:
            return result
        return result.numpy()

    def encode_layers(
        self,
        sentences: Sequence[str],
        output_layers: Sequence[int],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> dict[int, np.ndarray]:
        """Embeddings at several output layers from one forward pass per batch.

        Keys are the ``output_layers`` as given (HF hidden_states indices, negatives allowed).
        """
        items = _validate_sentences(sentences)
        batch_size = _check_batch_size(batch_size, self.config.batch_size)
        num_layers = self.loaded.num_layers
        if isinstance(output_layers, (int, str)) or not output_layers:
            raise ValueError(f"output_layers must be a non-empty list of ints, got {output_layers!r}")
        resolved = {k: resolve_output_layer(k, num_layers) for k in output_layers}
        if not items:
            return {k: np.zeros((0, self.embedding_dim), dtype=np.float32) for k in output_layers}
        unique = list(dict.fromkeys(normalize_sentence(s) for s in items))
        with self.loaded.lock:  # the tokenizer is shared (and toggles state per call)
            groups = self._tokenize_all(unique)
            aux_group = self._tokenize(AUX_TEMPLATE, unique) if self._cp_projection is not None else None
        states = self._run(groups, sorted(set(resolved.values())), batch_size, show_progress_bar, aux_group)
        # states are laid out template-major: [template][sentence]; average over each member's
        # templates (MetaEOL's 8), then over the ensemble's members
        n_templates = len(self.prompt.templates)
        row_of = {s: i for i, s in enumerate(unique)}
        order = [row_of[normalize_sentence(s)] for s in items]
        out = {}
        for k, index in resolved.items():
            per_template = states[index].reshape(n_templates, len(unique), -1)
            members, first = [], 0
            for member in self.members:
                members.append(per_template[first : first + len(member.templates)].mean(axis=0))
                first += len(member.templates)
            out[k] = ensemble_mean(members)[order]
        return out

    def count_tokens(self, sentences: str | Sequence[str]) -> list[int]:
        """Prompt tokens each sentence is encoded with (prompt included, after truncation).

        Summed over the prompt method's templates (each template is one forward row) and, with
        Contrastive Prompting, the auxiliary prompt (run up to ``cp_layer``), so it is what
        :meth:`encode` feeds the model for that sentence; a server reports it as usage.
        """
        items = _validate_sentences(sentences)
        unique = list(dict.fromkeys(normalize_sentence(s) for s in items))
        with self.loaded.lock:  # the tokenizer is shared (and toggles state per call)
            groups = self._tokenize_all(unique)
            if self._cp_projection is not None:
                groups.append(self._tokenize(AUX_TEMPLATE, unique))
        per_sentence = {s: sum(len(group[i].ids) for group in groups) for i, s in enumerate(unique)}
        return [per_sentence[normalize_sentence(s)] for s in items]

    def _tokenize_all(self, sentences: list[str]) -> list[list[PromptTokens]]:
        """One list of prompts per template, each in sentence order."""
        return [self._tokenize(template, sentences) for template in self.prompt.templates]

    def _shared_prefix(self, template: str, prompts: list[PromptTokens], depth: int) -> PrefixState | None:
        """The template's shared prefix keys/values up to layer ``depth``, or None when not usable.

        Computed per call (one row, a few dozen tokens): cheap next to the batches, and never stale
        if the model's weights change between calls.
        """
        if not self._use_prefix_cache or depth == 0:  # depth 0: the embeddings, no attention to save
            return None
        candidate = template_prefix_ids(self.loaded.tokenizer, template, self.use_tp)
        length = shared_prefix_length(candidate, prompts)
        if length == 0 or (self._attention_span is not None and length >= self._attention_span):
            return None
        return compute_prefix(self.loaded.model, self.loaded.layers, candidate[:length], depth)

    def _run(
        self,
        groups: list[list[PromptTokens]],
        indices: list[int],
        batch_size: int | None,
        show_progress_bar: bool | None,
        aux_group: list[PromptTokens] | None = None,
    ) -> dict[int, np.ndarray]:
        """Last-token states for every prompt, rows laid out group after group (template-major).

        Batches never mix templates, so each batch shares one cached prefix. With Contrastive
        Prompting, ``aux_group`` (the auxiliary prompt per sentence) runs first, up to the CP layer.
        """
        batch_size = _check_batch_size(batch_size, self.config.batch_size)
        plans = [
            plan_batches([len(p.ids) for p in group], batch_size, self.config.max_batch_tokens) for group in groups
        ]
        aux_plan = (
            plan_batches([len(p.ids) for p in aux_group], batch_size, self.config.max_batch_tokens)
            if aux_group is not None
            else []
        )
        n_batches = sum(len(plan) for plan in plans) + len(aux_plan)
        show = n_batches > 1 if show_progress_bar is None else show_progress_bar
        total = sum(len(group) for group in groups)
        out = {k: np.empty((total, self.embedding_dim), dtype=np.float32) for k in indices}
        lock = self.loaded.lock
        with torch.inference_mode(), tqdm(total=n_batches, desc="encoding", unit="batch", disable=not show) as bar:
            aux_values = self._aux_values(aux_group, aux_plan, bar) if aux_group is not None else None
            offset = 0
            for template, group, plan in zip(self.prompt.templates, groups, plans):
                with lock:
                    prefix = self._shared_prefix(template, group, max(indices))
                for rows in plan:
                    # One batch is one critical section: the hooks sit on the shared layers and
                    # the <PST> row in the shared embedding matrix only while this batch runs.
                    with lock:
                        self._set_pst_row()
                        cp_values = aux_values[rows] if aux_values is not None else None
                        states = self._forward([group[i] for i in rows], indices, prefix, cp_values)
                    for k, value in states.items():
                        out[k][[offset + i for i in rows]] = value.float().cpu().numpy()
                    bar.update(1)
                offset += len(group)
        return out

    def _aux_values(self, aux_group: list[PromptTokens], plan: list[list[int]], bar: tqdm) -> torch.Tensor:
        """Contrastive Prompting's ``v_aux``: the CP layer's output-projection input at the auxiliary
        prompt's last token, one row per sentence (the same for every template of an ensemble)."""
        assert self._cp_projection is not None and self.config.cp_layer is not None
        with self.loaded.lock:
            prefix = self._shared_prefix(AUX_TEMPLATE, aux_group, self.config.cp_layer + 1)
        values: torch.Tensor | None = None
        for rows in plan:
            with self.loaded.lock:
                self._set_pst_row()
                inputs, tp = self._inputs([aux_group[i] for i in rows], prefix)
                with tp:
                    batch_values = projection_input(self.loaded.model, self._cp_projection, inputs)
            if values is None:
                values = batch_values.new_empty((len(aux_group), batch_values.shape[-1]))
            values[rows] = batch_values
            bar.update(1)
        assert values is not None
        return values

    def _set_pst_row(self) -> None:
        """Write this encoder's <PST> input embedding (another encoder of the model may have set its own)."""
        if self.use_tp:
            weight = self.loaded.model.get_input_embeddings().weight
            with torch.no_grad():
                weight[self._pst_token_id] = self._pst_row

    def _forward(
        self,
        prompts: list[PromptTokens],
        indices: list[int],
        prefix: PrefixState | None,
        cp_values: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """One batch: the suffixes on top of the cached prefix when it applies, else whole prompts."""
        inputs, tp = self._inputs(prompts, prefix)
        cp = (
            contrastive_prompting(self._cp_projection, cp_values, self.config.cp_alpha, self.config.cp_mode)
            if cp_values is not None and self._cp_projection is not None
            else nullcontext()
        )
        if self.config.pooling == "attention_sum":
            with tp, cp, attention_outputs(self.loaded.layers, self.embedding_dim) as collected:
                last_token_states(self.loaded.model, self.loaded.layers, inputs, indices)
            return cumulative_sums(collected, indices)
        with tp, cp:
            return last_token_states(self.loaded.model, self.loaded.layers, inputs, indices)

    def _inputs(self, prompts: list[PromptTokens], prefix: PrefixState | None) -> tuple[dict[str, Any], Any]:
        """Model inputs of one batch and its TP hooks (a context manager; a no-op without TP)."""
        device = self.loaded.device
        if prefix is not None and self._attention_span is not None:
            width = max(len(p.ids) for p in prompts)
            if width > self._attention_span:  # padding between prefix and suffix would skew the window
                prefix = None
        batch = collate(prompts, self._pad_token_id, prefix.length if prefix is not None else 0)
        inputs: dict[str, Any] = {
            "input_ids": batch.input_ids.to(device),
            "attention_mask": batch.attention_mask.to(device),
            "position_ids": batch.position_ids.to(device),
        }
        if prefix is not None:
            inputs[self._cache_argument] = batch_cache(prefix, len(prompts))
            inputs["use_cache"] = True  # the layers append the suffix keys/values to the cache
        tp = (
            token_prepending(
                self.loaded.layers, batch.pst_index, self.config.tp_starting_index, self.config.tp_exiting_index
            )
            if self.use_tp
            else nullcontext()
        )
        return inputs, tp

    @staticmethod
    def similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
        """Cosine similarity matrix between two sets of embeddings (1-D inputs are one row)."""
        a_t = torch.as_tensor(np.asarray(a), dtype=torch.float32)
        b_t = torch.as_tensor(np.asarray(b), dtype=torch.float32)
        a_t, b_t = a_t.reshape(-1, a_t.shape[-1]), b_t.reshape(-1, b_t.shape[-1])
        a_t = torch.nn.functional.normalize(a_t, dim=-1)
        b_t = torch.nn.functional.normalize(b_t, dim=-1)
        return (a_t @ b_t.T).numpy()

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items() if k != "template")
        return f"Encoder({settings})"
