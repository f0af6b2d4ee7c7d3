"""The one dev scorer of every tuner: STS-B dev pairs, rows encoded through the embedding cache,
scored by the very call ``tpembed eval`` makes, with the model's forward calls counted.

A *row* is one single prompt method under one setting of everything else but the output layer:
one pass captures every candidate output layer (``Encoder.encode_layers``), and each (row, layer)
has the namespace ``tpembed run``/``eval`` use, so a tuner resumes and a later ``run`` reuses it.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import EncoderConfig
from ..embedding_cache import EmbeddingCache, cached_layers, default_cache_dir
from ..encoder import Encoder
from ..evaluation import STSData, ensure_senteval, load_task, score_sts
from ..evaluation._embeddings import encode_unique
from ..evaluation.data import STSSubset
from ..identity import cache_namespace
from ..levers.aggregate import ensemble_mean, layer_mean
from ..models import LoadedModel
from .candidate import Candidate

DEV_TASK = "STSBenchmark-dev"


def dev_pairs(data_dir: Any, limit: int | None = None, subsample: int | None = None) -> STSData:
    """STS-B dev (first ``limit`` pairs), optionally ``subsample`` evenly spaced pairs of it."""
    data = load_task(DEV_TASK, data_dir, limit)
    assert isinstance(data, STSData)
    if subsample is None:
        return data
    (name, full), = data.subsets.items()
    if subsample < 2:
        raise ValueError("subsample needs at least 2 pairs")
    keep = sorted(set(np.linspace(0, len(full) - 1, min(subsample, len(full))).round().astype(int).tolist()))
    part = STSSubset(name, [full.sent1[i] for i in keep], [full.sent2[i] for i in keep], full.gold[keep])
    return STSData(data.spec, {name: part})


def dev_data(
    data_dir: str | os.PathLike[str] | None, limit: int | None = None, subsample: int | None = None,
    *, progress: bool = True,
) -> STSData:
    """:func:`dev_pairs` from the SentEval folder :func:`ensure_senteval` finds (fetched once if missing)."""
    return dev_pairs(ensure_senteval(data_dir, [DEV_TASK], progress=progress), limit, subsample)


def encode_layers_cached(
    encoder: Encoder, sentences: list[str], outputs: list[int], use_cache: bool, progress: bool
) -> dict[int, np.ndarray]:
    """``encoder.encode_layers`` through the embedding cache, one namespace per output layer."""

    def encode_layers(chunk: list[str], layers: list[int]) -> dict[int, np.ndarray]:
        return encoder.encode_layers(chunk, layers, show_progress_bar=progress)

    namespaces = {layer: cache_namespace(encoder, layer) for layer in outputs} if use_cache else {}
    if use_cache and None in namespaces.values():
        warnings.warn("embedding cache disabled: this in-memory model has no file hash or source to key it by")
        namespaces = {}
    if not namespaces:
        return encode_layers(sentences, outputs)
    caches = {layer: EmbeddingCache(default_cache_dir() / "embeddings", ns) for layer, ns in namespaces.items()}
    try:
        return cached_layers(encode_layers, caches)(sentences)
    finally:
        for cache in caches.values():
            cache.close()


@dataclass
class ForwardCount:
    """Model forward calls (batches) seen while counting."""

    calls: int = 0


@contextmanager
def count_forwards(model: torch.nn.Module) -> Iterator[ForwardCount]:
    """Count ``model``'s forward calls inside the block (rows that came from the cache make none)."""
    count = ForwardCount()

    def bump(*_: Any) -> None:
        count.calls += 1

    handle = model.register_forward_pre_hook(bump)
    try:
        yield count
    finally:
        handle.remove()


def _row_key(config: EncoderConfig) -> tuple[tuple[str, Any], ...]:
    # everything that can change a row's vectors; CP's alpha and mode only while CP is on
    settings = config.model_dump(exclude={"output_layer"})
    if config.cp_layer is None:
        del settings["cp_alpha"], settings["cp_mode"]
    return tuple((key, _hashable(value)) for key, value in settings.items())


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


class DevScorer:
    """Scores candidates on STS-B dev from per-row, per-layer vectors (rows memoised, cached on disk).

    ``base`` holds the EncoderConfig fields no candidate sets (model, batch size, ...); ``outputs``
    are the output layers every row captures, so any candidate whose layers are among them is free
    once its rows ran.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        data: STSData,
        outputs: Sequence[int],
        base: Mapping[str, Any],
        *,
        use_cache: bool = True,
        progress: bool = True,
        max_rows_in_memory: int = 8,
    ) -> None:
        self.loaded, self.data, self.outputs, self.base = loaded, data, list(outputs), dict(base)
        self.use_cache, self.progress = use_cache, progress
        self.sentences = list(dict.fromkeys(data.sentences()))
        self._rows: OrderedDict[tuple[tuple[str, Any], ...], dict[int, np.ndarray]] = OrderedDict()
        self._max_rows = max_rows_in_memory
        self._scores: dict[Candidate, float] = {}
        self._similarities: dict[Candidate, dict[str, np.ndarray]] = {}  # per subset, for confidence intervals
        self.rows_encoded = 0  # rows that needed the model (the rest came from memory or the cache)
        self.forward_calls = 0  # model forward calls (batches) those rows made

    def _row(self, config: EncoderConfig) -> dict[int, np.ndarray]:
        key = _row_key(config)
        if key in self._rows:
            self._rows.move_to_end(key)
            return self._rows[key]
        with count_forwards(self.loaded.model) as count:
            encoder = Encoder(self.loaded, config=config.model_copy(update={"output_layer": self.outputs[0]}))
            vectors = encode_layers_cached(encoder, self.sentences, self.outputs, self.use_cache, self.progress)
        self.forward_calls += count.calls
        self.rows_encoded += count.calls > 0
        self._rows[key] = vectors
        while len(self._rows) > self._max_rows:
            self._rows.popitem(last=False)
        return vectors

    def vectors(self, candidate: Candidate) -> np.ndarray:
        """The candidate's embeddings of ``self.sentences``, combined exactly as the Encoder does."""
        config = candidate.config(self.base)
        missing = sorted(set(config.output_layers()) - set(self.outputs))
        if missing:
            raise ValueError(f"output layers {missing} are not among the scorer's {self.outputs}")
        # an ensemble (prompts x demonstrations, in the Encoder's order) is combined from its members'
        # rows, and EmbedFilter applied after, so neither costs a pass of its own
        rows = [
            self._row(config.model_copy(update={"prompt_method": m, "demonstration": d, "demo_ensemble": None,
                                                "embed_filter": None}))
            for m in config.prompt_methods() for d in config.demonstrations()
        ]
        finish = Encoder(self.loaded, config=config).postprocess if config.embed_filter is not None else None
        by_layer = [ensemble_mean([row[k] for row in rows]) for k in config.output_layers()]
        return layer_mean([finish(v) for v in by_layer] if finish else by_layer)

    def score(self, candidate: Candidate) -> float:
        """STS-B dev Spearman x100 of ``candidate``: what ``tpembed eval`` of its settings gives on these pairs."""
        if candidate not in self._scores:
            vectors = self.vectors(candidate)
            # the table ``evaluate`` builds (non-finite rows handled as eval handles them)
            table = encode_unique(self.sentences, lambda _: vectors)
            res = score_sts(self.data, table)
            self._scores[candidate] = float(res["score"])
            self._similarities[candidate] = {k: v["cosine"] for k, v in res["pairs"].items()}
        return self._scores[candidate]

    def similarities(self, candidate: Candidate) -> dict[str, np.ndarray]:
        """The candidate's cosine similarity of every dev pair, per subset (what :meth:`score` ranks)."""
        self.score(candidate)
        return self._similarities[candidate]
