"""The Encoder: sentences in, prompt-based (optionally Token Prepending) embeddings out."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import ConfigSource, EncoderConfig, resolve_config
from .inputs import PromptTokenizer, PromptTokens, collate, plan_batches
from .levers import Batch, Call, Lever, Pooling, build_levers
from .levers.aggregate import ensemble_mean, layer_mean
from .levers.hooks import run_until
from .levers.prefix_cache import PrefixState
from .models import LoadedModel, load_model, prepare_model
from .numbering import resolve_output_layer
from .prompts import PromptMethod, get_prompt_method, normalize_sentence

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


def _warn_about_odd_settings(config: EncoderConfig, output_index: int, levers: Sequence[Lever]) -> None:
    """Warn about legal settings that are almost surely mistakes (the first such)."""
    if output_index == 0:
        message: str | None = (
            f"output_layer={config.output_layer} is hidden_states[0], the input embedding of the prompt's "
            "last token: the same vector for every sentence. Use a later layer (e.g. -1)"
        )
    else:
        message = next((m for m in (lever.warning(output_index) for lever in levers) if m), None)
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)  # -> the caller of Encoder(...)


def build_prompt(config: EncoderConfig, levers: Sequence[Lever]) -> tuple[list[PromptMethod], PromptMethod]:
    """An ensemble's members (each one or more templates, rewritten by the levers: a demonstration;
    prompt-major, then demonstration-ensemble member), and one PromptMethod holding all their templates in order."""
    use_placeholder = any(lever.uses_placeholder for lever in levers)
    names = [None] if config.template is not None else config.prompt_methods()
    members: list[PromptMethod] = []
    for name in names:
        methods = [get_prompt_method(name or "", config.template, use_placeholder=use_placeholder)]
        for lever in levers:  # a lever may split a member in several (a demonstration ensemble)
            rewritten = [lever.rewrite_prompt(m) for m in methods]
            methods = [m for r in rewritten for m in (r if isinstance(r, list) else [r])]
        members.extend(methods)
    if len(members) == 1:
        return members, members[0]
    combined = PromptMethod(
        "+".join(m.name for m in members),
        tuple(t for m in members for t in m.templates),
        "ensemble: " + ", ".join(m.name for m in members),
    )
    return members, combined


def _resolve(
    source: ConfigSource | LoadedModel | PreTrainedModel, config: ConfigSource, settings: dict[str, Any]
) -> tuple[EncoderConfig, LoadedModel | PreTrainedModel | None]:
    """The settings and, when one was passed, the in-memory model (see :class:`Encoder`)."""
    model: LoadedModel | PreTrainedModel | None = None
    if isinstance(source, (LoadedModel, PreTrainedModel)):
        model = source
        if config is None and "model" not in settings:
            # an in-memory model with no config named: the paper's generic settings, as for any model
            name = (
                str(source.identity.get("name", "in-memory model"))
                if isinstance(source, LoadedModel)
                else source.name_or_path or type(source).__name__
            )
            settings = {"model": name, **settings}
    elif source is not None:
        if config is not None:
            raise ValueError("give the config once: Encoder(NAME) or Encoder(config=NAME), not both")
        config = source
    return resolve_config(config, settings).encoder_config(), model


class Encoder:
    """Turns a decoder-only LLM into a sentence encoder (PromptEOL & co., with or without TP).

    Settings are named one way everywhere (see :func:`tpembed.config.resolve_config`)::

        Encoder()                                   # the packaged default config (smollm2-135m-tp)
        Encoder("smollm2-135m-best")                # a named config (tpembed configs lists them)
        Encoder("my.yaml")                          # a YAML file's default_config entry
        Encoder(config=cfg, output_layer=-2)        # an EncoderConfig, with overrides
        Encoder(model="gemma3-270m", use_which_plan="tp", tp_starting_index=1, tp_exiting_index=5)

    With ``model=`` and no config, unnamed settings are EncoderConfig's defaults (the paper's). The
    first argument may also be an already loaded :class:`LoadedModel` or a ``PreTrainedModel``
    (then pass ``tokenizer``); the encoder adds the ``<PST>`` token to that tokenizer and model.

    Loading a model by name is quiet; ``progress=True`` shows transformers' own loading bars.
    A misspelt setting is a ValueError naming the closest valid one
    (``Encoder(outputlayer=5)``: ``unknown key 'outputlayer' (did you mean 'output_layer'?)``).
    """

    def __init__(
        self,
        source: ConfigSource | LoadedModel | PreTrainedModel = None,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        config: ConfigSource = None,
        progress: bool = False,
        **settings: Any,
    ) -> None:
        config, model = _resolve(source, config, settings)
        self.config = config
        if isinstance(model, LoadedModel):
            self.loaded = model
        elif isinstance(model, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("pass the model's tokenizer along with an in-memory model")
            self.loaded = prepare_model(model, tokenizer, {"name": type(model).__name__})
        else:
            self.loaded = load_model(config.model, device=config.device, dtype=config.dtype, progress=progress)
        self.levers = build_levers(config, self.loaded.num_layers)  # each checks its layers here
        self.pooling = next(lever for lever in self.levers if isinstance(lever, Pooling))
        self.output_indices: list[int] = self.pooling.output_indices
        self.output_index = self.output_indices[0]
        self.members, self.prompt = build_prompt(config, self.levers)
        _warn_about_odd_settings(config, self.output_index, self.levers)
        tok = self.loaded.tokenizer
        with self.loaded.lock:  # levers may change the shared tokenizer and embedding matrix (<PST>)
            for lever in self.levers:
                lever.attach(self.loaded, self.embedding_dim)
            self._pst_token_id = next(
                (lever.token_id for lever in self.levers if lever.uses_placeholder), None  # type: ignore[attr-defined]
            )
            limit = getattr(self.loaded.model.config, "max_position_embeddings", None) or _NO_LIMIT
            self.max_length = min(config.max_length or limit, limit)
            self._tokenize = PromptTokenizer(tok, self._pst_token_id, self.max_length)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_token_id = pad if pad is not None else 0

    @property
    def use_tp(self) -> bool:
        """Whether Token Prepending is on (prompts carry <PST>)."""
        return self._pst_token_id is not None

    @property
    def embedding_dim(self) -> int:
        """Length of one embedding vector (the model's hidden size)."""
        return self.loaded.model.get_input_embeddings().weight.shape[1]

    @property
    def identity(self) -> dict[str, Any] | None:
        """What these vectors depend on (see :mod:`tpembed.identity`); None for a model without a stable identity."""
        from .identity import encoder_identity

        return encoder_identity(self)

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
        if isinstance(output_layers, (int, str)) or not output_layers:
            raise ValueError(f"output_layers must be a non-empty list of ints, got {output_layers!r}")
        resolved = {k: resolve_output_layer(k, self.loaded.num_layers) for k in output_layers}
        if not items:
            return {k: np.zeros((0, self.embedding_dim), dtype=np.float32) for k in output_layers}
        unique = list(dict.fromkeys(normalize_sentence(s) for s in items))
        states = self._run(unique, sorted(set(resolved.values())), batch_size, show_progress_bar)
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
            out[k] = self.postprocess(ensemble_mean(members))[order]
        return out

    def postprocess(self, vectors: np.ndarray) -> np.ndarray:
        """The levers' post-processing (EmbedFilter) of one output layer's combined vectors."""
        for lever in self.levers:
            vectors = lever.transform(vectors)
        return vectors

    def count_tokens(self, sentences: str | Sequence[str]) -> list[int]:
        """Prompt tokens each sentence is encoded with (prompt included, after truncation).

        Summed over the prompt method's templates (each template is one forward row) and the
        levers' extra prompts (Contrastive Prompting's auxiliary prompt, run up to ``cp_layer``),
        so it is what :meth:`encode` feeds the model for that sentence; a server reports it as usage.
        """
        items = _validate_sentences(sentences)
        unique = list(dict.fromkeys(normalize_sentence(s) for s in items))
        with self.loaded.lock:  # the tokenizer is shared (and toggles state per call)
            groups = [self._tokenize(t, unique) for t in (*self.prompt.templates, *self._extra_templates())]
        per_sentence = {s: sum(len(group[i].ids) for group in groups) for i, s in enumerate(unique)}
        return [per_sentence[normalize_sentence(s)] for s in items]

    def _extra_templates(self) -> list[str]:
        return [t for lever in self.levers for t in lever.extra_templates]

    def _tokenize_all(self, sentences: list[str]) -> list[list[PromptTokens]]:
        """One list of prompts per template, each in sentence order."""
        return [self._tokenize(template, sentences) for template in self.prompt.templates]

    def _run(
        self, sentences: list[str], indices: list[int], batch_size: int, show_progress_bar: bool | None
    ) -> dict[int, np.ndarray]:
        """Pooled states at ``indices`` for every prompt, rows laid out template after template.

        Batches never mix templates, so each batch shares one cached prefix. Levers with a pass of
        their own (Contrastive Prompting's auxiliary prompt) run it first, through the same loop.
        """
        with self.loaded.lock:  # the tokenizer is shared (and toggles state per call)
            tokenized = {t: self._tokenize(t, sentences) for t in (*self.prompt.templates, *self._extra_templates())}
        plans = {
            t: plan_batches([len(p.ids) for p in group], batch_size, self.config.max_batch_tokens)
            for t, group in tokenized.items()
        }
        n_batches = sum(len(plan) for plan in plans.values())
        show = n_batches > 1 if show_progress_bar is None else show_progress_bar
        total = len(sentences) * len(self.prompt.templates)
        out = {k: np.empty((total, self.embedding_dim), dtype=np.float32) for k in indices}
        with torch.inference_mode(), tqdm(total=n_batches, desc="encoding", unit="batch", disable=not show) as bar:

            def run_group(template: str, group: list[PromptTokens], depth: int, read: Any, skip: Lever | None = None) -> None:
                self._run_group(call, template, group, plans[template], depth, read, skip)

            call = Call(sentences, run_group, lambda t, s: tokenized[t], bar)
            for lever in self.levers:
                lever.before_batches(call, max(indices))
            for number, template in enumerate(self.prompt.templates):
                offset = number * len(sentences)

                def read(batch: Batch, run: Any, offset: int = offset) -> None:
                    with self.pooling.capture(batch, self.loaded.layers, indices) as captured:
                        output = run()
                    for k, value in self.pooling.read(captured, output, batch, indices).items():
                        out[k][[offset + i for i in batch.rows]] = value.float().cpu().numpy()

                self._run_group(call, template, tokenized[template], plans[template], max(indices), read)
        return out

    def _run_group(
        self,
        call: Call,
        template: str,
        group: list[PromptTokens],
        plan: list[list[int]],
        depth: int,
        read: Any,
        skip: Lever | None = None,
    ) -> None:
        """Run one template's prompts batch by batch through decoder layers ``0..depth-1``.

        ``read(batch, run)`` calls ``run()`` (the forward) inside its own capture hooks. ``skip``: a
        lever running its own pass leaves its hooks out of it.
        """
        levers = [lever for lever in self.levers if lever is not skip]
        lock = self.loaded.lock
        with lock:
            prefix = next((p for p in (lever.prefix(template, group, depth) for lever in levers) if p), None)
        for rows in plan:
            # One batch is one critical section: the hooks sit on the shared layers and the <PST>
            # row in the shared embedding matrix only while this batch runs.
            with lock:
                batch = self._batch(call, template, [group[i] for i in rows], rows, prefix)
                with ExitStack() as hooks:
                    for lever in levers:
                        hooks.enter_context(lever.batch_hooks(batch))
                    read(batch, lambda: run_until(self.loaded.model, self.loaded.layers, batch.inputs, depth))
            call.progress.update(1)

    def _batch(
        self, call: Call, template: str, prompts: list[PromptTokens], rows: list[int], prefix: PrefixState | None
    ) -> Batch:
        """Model inputs of one batch: the suffixes on top of the cached prefix when it applies."""
        if prefix is not None and not prefix.fits(max(len(p.ids) for p in prompts)):
            prefix = None
        prefix_length = prefix.length if prefix is not None else 0
        collated = collate(prompts, self._pad_token_id, prefix_length)
        device = self.loaded.device
        inputs: dict[str, Any] = {
            "input_ids": collated.input_ids.to(device),
            "attention_mask": collated.attention_mask.to(device),
            "position_ids": collated.position_ids.to(device),
        }
        if prefix is not None:
            inputs.update(prefix.model_inputs(len(prompts)))
        sentences = [call.sentences[i] for i in rows]
        return Batch(rows, sentences, template, prompts, inputs, collated.pst_index, prefix_length, call)

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
