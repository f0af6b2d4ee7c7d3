"""EmbedFilter (Wu et al., 2026, arXiv 2606.07502): keep the bulk of the unembedding matrix's spectrum.

The lm_head ``W`` (vocab x hidden) writes frequent, uninformative tokens into the hidden states
through the directions at both edges of its spectrum. With ``W = U S Vh``, the filter projects an
embedding onto the ``hidden / embed_filter`` rows of ``Vh`` in the middle (as many dropped at the
top as at the bottom). It needs no data: the matrix comes from the model, so the identity needs
only the ratio. The projection is written back in the hidden basis (``Vb^T Vb x``), so the vector
keeps its length ``hidden`` and its cosine similarities are those of the reduced coordinates.
The right-singular vectors are the eigenvectors of ``W^T W``, which is what is computed.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch

from ..prompts import PLACEHOLDER_TOKEN
from .base import Lever

# one projection per (unembedding matrix, excluded row, kept count): computed once per model, not per
# Encoder; keyed by the tensor's id (tensors compare elementwise) and dropped when the tensor is freed
_PROJECTIONS: dict[int, dict[tuple[int, int], np.ndarray]] = {}
_LOCK = threading.Lock()


def placeholder_row(tokenizer: Any) -> int:
    """The row Token Prepending writes its <PST> embedding into: its id once added, else the id it will
    get. On a model with tied embeddings that row is also the lm_head's, so EmbedFilter leaves it out
    whether or not TP ran first (one model may serve both kinds of Encoder)."""
    vocab = tokenizer.get_vocab()
    return int(vocab[PLACEHOLDER_TOKEN]) if PLACEHOLDER_TOKEN in vocab else len(tokenizer)


def bulk_projection(unembedding: torch.Tensor, keep: int, skip_row: int = -1, chunk: int = 8192) -> np.ndarray:
    """``Vb^T Vb`` (hidden x hidden, float32) for the ``keep`` middle right-singular vectors of ``unembedding``
    (without row ``skip_row``): the eigenvectors of ``W^T W``, summed in float64 chunk by chunk so no
    vocab-sized float64 copy is made, on any device and dtype."""
    hidden = unembedding.shape[1]
    if not 0 < keep <= hidden:
        raise ValueError(f"EmbedFilter keeps 1..{hidden} directions, got {keep}")
    with _LOCK:
        if id(unembedding) not in _PROJECTIONS:
            _PROJECTIONS[id(unembedding)] = {}
            weakref.finalize(unembedding, _PROJECTIONS.pop, id(unembedding), None)
        cached = _PROJECTIONS[id(unembedding)]
    if (skip_row, keep) not in cached:
        gram = torch.zeros(hidden, hidden, dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, unembedding.shape[0], chunk):
                rows = unembedding[start : start + chunk].detach().to("cpu", torch.float64)
                if start <= skip_row < start + len(rows):
                    rows = torch.cat([rows[: skip_row - start], rows[skip_row - start + 1 :]])
                gram += rows.T @ rows
        _, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues = ascending singular values
        vh = vectors.flip(-1).T  # rows in descending singular value order, as an SVD's Vh
        begin = (hidden - keep) // 2
        band = vh[begin : begin + keep]
        cached[(skip_row, keep)] = (band.T @ band).to(torch.float32).numpy()
    return cached[(skip_row, keep)]


class EmbedFilter(Lever):
    """``embed_filter``: project every embedding onto the bulk of the lm_head's spectrum."""

    order = 95  # post-processing: after pooling

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config.embed_filter is not None

    def identity(self) -> dict[str, Any]:
        return {"embed_filter": self.config.embed_filter}

    def attach(self, loaded: Any, hidden_size: int) -> None:
        if loaded.unembedding is None:
            raise ValueError(
                "embed_filter needs the model's unembedding matrix (lm_head), and this model has none: "
                "load it as a causal LM (AutoModelForCausalLM) or turn embed_filter off"
            )
        keep = max(1, round(hidden_size / self.config.embed_filter))
        self.projection = bulk_projection(loaded.unembedding, keep, placeholder_row(loaded.tokenizer))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors @ self.projection).astype(vectors.dtype, copy=False)  # the projection is symmetric
