"""Encode each distinct sentence once and look vectors up afterwards."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]


class EmbeddingTable:
    """Maps sentences to rows of one embedding matrix."""

    def __init__(self, sentences: Sequence[str], vectors: np.ndarray) -> None:
        self.index = {s: i for i, s in enumerate(sentences)}
        self.vectors = vectors
        self.n_nonfinite = 0

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        """Stack the vectors of ``sentences`` (KeyError for an unknown sentence)."""
        try:
            rows = [self.index[s] for s in sentences]
        except KeyError as err:
            raise KeyError(f"sentence was not encoded: {err.args[0]!r}") from None
        return self.vectors[rows]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def unique(sentences: Iterable[str]) -> list[str]:
    """Distinct sentences in first-seen order."""
    return list(dict.fromkeys(sentences))


def check_vectors(out: object, n: int) -> np.ndarray:
    """Validate an encode_fn result: 2-D, one row per sentence, floating point."""
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"encode_fn must return an array of shape (n_sentences={n}, dim), "
                         f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def encode_unique(sentences: Iterable[str], encode_fn: EncodeFn) -> EmbeddingTable:
    """Call ``encode_fn`` exactly once on the distinct sentences; return a lookup table.

    Non-finite values are reported with a warning and replaced by ``np.nan_to_num``
    (SentEval applies nan_to_num before cosine; a crash after a long encode helps nobody).
    """
    uniq = unique(sentences)
    if not uniq:
        raise ValueError("no sentences to encode")
    vectors = check_vectors(encode_fn(uniq), len(uniq))
    bad_rows = ~np.isfinite(vectors).all(axis=1)
    table = EmbeddingTable(uniq, vectors)
    if bad_rows.any():
        table.n_nonfinite = int(bad_rows.sum())
        warnings.warn(f"encode_fn returned non-finite values for {table.n_nonfinite} of "
                      f"{len(uniq)} sentences; replaced with np.nan_to_num", RuntimeWarning,
                      stacklevel=2)
        table.vectors = np.nan_to_num(vectors)
    return table
