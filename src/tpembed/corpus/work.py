"""One shard's work, the same for every engine: read its rows, embed the good ones, write it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .plan import Shard
from .readers import Columns, read_rows
from .writer import write_shard

if TYPE_CHECKING:
    from ..encoder import Encoder


def embed_shard(
    encoder: Encoder, out: Path, shard: Shard, columns: Columns, *, keep_text: bool, batch_size: int | None = None
) -> dict[str, int]:
    """Embed one shard into ``out`` and return its counts (rows, embedded, rejected).

    Rejected rows are written with their reason; a row the encoder itself refuses is rejected
    alone (the rest of the shard is still embedded), never silently dropped.
    """
    good, rejected = [], []
    for index, row in enumerate(read_rows(Path(shard.path), shard.start, shard.stop, columns, shard.offset),
                                start=shard.start):
        (good if row.reason is None else rejected).append((index, row))
    texts = [row.text for _, row in good]
    try:
        vectors = encoder.encode(texts, batch_size=batch_size, show_progress_bar=False)
    except ValueError:
        vectors, good, rejected = _one_by_one(encoder, good, rejected)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(good), encoder.embedding_dim)
    return write_shard(out, shard, [row for _, row in good], vectors, sorted(rejected, key=lambda p: p[0]),
                       keep_text=keep_text)


def _one_by_one(encoder: Encoder, good: list, rejected: list) -> tuple[np.ndarray, list, list]:
    """Embed rows singly to find the ones the encoder refuses (rare: the batch call failed)."""
    from .readers import Row

    kept, vectors = [], []
    for index, row in good:
        try:
            vectors.append(encoder.encode([row.text], show_progress_bar=False)[0])
            kept.append((index, row))
        except ValueError as err:
            rejected.append((index, Row(row.id, reason=f"encoder refused the text: {err}")))
    return np.array(vectors, dtype=np.float32), kept, rejected
