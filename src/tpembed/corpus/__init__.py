"""Corpus embedding (``tpembed embed``): files of any size in, Parquet shards of vectors out.

Locally (one process) or on Ray Data (an actor pool, one model per actor); resumable, with the
rows that cannot be embedded listed in ``rejects.jsonl``. See :func:`embed_corpus`.
"""

from .api import ENGINES, embed_corpus

__all__ = ["ENGINES", "embed_corpus"]
