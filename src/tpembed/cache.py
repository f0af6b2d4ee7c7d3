"""On-disk sentence-embedding cache (one SQLite database per namespace).

A namespace is a caller-built string that identifies everything that changes the
vectors (model file hash, prompt, layer, pooling, Token Prepending settings...).
It is hashed to a folder name; the text itself is stored next to the database
(``namespace.txt``) so humans can tell the folders apart. Vectors are stored as
float32 bytes keyed by the SHA-1 of the UTF-8 sentence; every ``put_many`` commits,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CACHE_ENV_VAR = "TPEMBED_CACHE"
_DTYPE = np.float32
_SQL_CHUNK = 500  # stays below SQLite's host-parameter limit on old builds (999)

EncodeFn = Callable[[list[str]], np.ndarray]


def default_cache_dir() -> Path:
    """``$TPEMBED_CACHE`` if set, else ``~/.cache/tpembed``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tpembed"


def namespace_dirname(namespace: str) -> str:
    """Folder name for a namespace: first 24 hex digits of its SHA-256."""
    return hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:24]


def _key(sentence: str) -> bytes:
    return hashlib.sha1(sentence.encode("utf-8")).digest()


class EmbeddingCache:
    """Sentence -> float32 vector store for one namespace."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None, namespace: str) -> None:
        if not namespace:
            raise ValueError("namespace must be a non-empty string")
        self.namespace = namespace
        base = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        self.path = base / namespace_dirname(namespace)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "namespace.txt").write_text(namespace + "\n", encoding="utf-8")
        except OSError as err:
            raise OSError(f"cannot create embedding cache in {str(self.path)!r} ({err}); set "
                          f"${CACHE_ENV_VAR} or pass a writable cache_dir") from err
        self._db = sqlite3.connect(self.path / "embeddings.sqlite")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB)")
        self._check_namespace()
        self._db.commit()

    # -- metadata -----------------------------------------------------------------------

    def _meta(self, k: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else row[0]

    def _check_namespace(self) -> None:
        stored = self._meta("namespace")
        if stored is None:
            self._db.execute("INSERT INTO meta VALUES ('namespace', ?)", (self.namespace,))
        elif stored != self.namespace:  # only on a hash-prefix collision or a hand-edited db
            raise ValueError(f"cache folder {str(self.path)!r} belongs to another namespace")

    @property
    def dim(self) -> int | None:
        """Vector dimension stored in this namespace (None while empty)."""
        v = self._meta("dim")
        return None if v is None else int(v)

    # -- access -------------------------------------------------------------------------

    def get_many(self, sentences: Sequence[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """Look sentences up. Returns ``({input index: vector}, [indices not cached])``."""
        keys = [_key(s) for s in sentences]
        found: dict[bytes, bytes] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), _SQL_CHUNK):
            chunk = uniq[i:i + _SQL_CHUNK]
            q = f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self._db.execute(q, chunk).fetchall())
        # copy: frombuffer views are read-only and callers may modify the vectors
        hits = {i: np.frombuffer(found[k], dtype=_DTYPE).copy()
                for i, k in enumerate(keys) if k in found}
        missing = [i for i, k in enumerate(keys) if k not in found]
        return hits, missing

    def put_many(self, sentences: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (as float32) for sentences and commit."""
        arr = np.asarray(vectors, dtype=_DTYPE)
        if arr.ndim != 2 or arr.shape[0] != len(sentences):
            raise ValueError(f"vectors must have shape ({len(sentences)}, dim), got {arr.shape}")
        if not len(sentences):
            return
        dim = self.dim
        if dim is None:
            self._db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(arr.shape[1]),))
        elif dim != arr.shape[1]:
            raise ValueError(f"cache namespace holds {dim}-d vectors, got {arr.shape[1]}-d; "
                             "a different setting needs a different namespace")
        rows = [(_key(s), np.ascontiguousarray(v).tobytes()) for s, v in zip(sentences, arr)]
        with self._db:  # one transaction per batch: commit on success, roll back on error
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cached(encode_fn: EncodeFn, cache: EmbeddingCache, batch_size: int = 4096) -> EncodeFn:
    """Wrap ``encode_fn`` so only uncached sentences are encoded.

    Missing distinct sentences are encoded in chunks of ``batch_size`` and stored after
    each chunk (so an interrupted run resumes). Returns float32 vectors in input order,
    identical whether they came from the encoder or the cache.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")

    def wrapped(sentences: list[str]) -> np.ndarray:
        sentences = list(sentences)
        hits, missing = cache.get_many(sentences)
        todo = list(dict.fromkeys(sentences[i] for i in missing))
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            vecs = np.asarray(encode_fn(chunk), dtype=_DTYPE)
            cache.put_many(chunk, vecs)
            fresh.update(zip(chunk, vecs))
        if not sentences:
            return np.zeros((0, cache.dim or 0), dtype=_DTYPE)
        rows = [hits[i] if i in hits else fresh[s] for i, s in enumerate(sentences)]
        return np.stack(rows)

    return wrapped


LayersEncodeFn = Callable[[list[str], list[int]], dict[int, np.ndarray]]


def cached_layers(encode_layers_fn: LayersEncodeFn, caches: dict[int, EmbeddingCache],
                  batch_size: int = 4096) -> Callable[[list[str]], dict[int, np.ndarray]]:
    """:func:`cached` for several output layers computed by one forward pass.

    ``caches`` maps each layer to its own namespace. A sentence missing from any layer's cache is
    encoded once for all the layers that miss it, in the same chunks :func:`cached` would use, so
    a layer's vectors are bit-identical to a single-layer run over the same sentences.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not caches:
        raise ValueError("caches must name at least one layer")

    def wrapped(sentences: list[str]) -> dict[int, np.ndarray]:
        sentences = list(sentences)
        lookups = {layer: cache.get_many(sentences) for layer, cache in caches.items()}
        missing = sorted({i for _, miss in lookups.values() for i in miss})
        todo = list(dict.fromkeys(sentences[i] for i in missing))
        layers = [layer for layer, (_, miss) in lookups.items() if miss]
        fresh: dict[int, dict[str, np.ndarray]] = {layer: {} for layer in layers}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            vectors = encode_layers_fn(chunk, layers)
            for layer in layers:
                arr = np.asarray(vectors[layer], dtype=_DTYPE)
                caches[layer].put_many(chunk, arr)
                fresh[layer].update(zip(chunk, arr))
        out = {}
        for layer, (hits, _) in lookups.items():
            if not sentences:
                out[layer] = np.zeros((0, caches[layer].dim or 0), dtype=_DTYPE)
                continue
            out[layer] = np.stack([hits[i] if i in hits else fresh[layer][s] for i, s in enumerate(sentences)])
        return out

    return wrapped
