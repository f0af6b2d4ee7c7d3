"""On-disk sentence-embedding cache (one SQLite database per namespace).

A namespace is a caller-built string that identifies everything that changes the
vectors (model file hash, prompt, layer, pooling, Token Prepending settings...).
It is hashed to a folder name; the text itself is stored next to the database
(``namespace.txt``) so humans can tell the folders apart. Vectors are stored as
float32 bytes keyed by the SHA-1 of the UTF-8 sentence, each with a checksum; every
``put_many`` commits, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CACHE_ENV_VAR = "TPEMBED_CACHE"
_DTYPE = np.float32
_ITEMSIZE = np.dtype(_DTYPE).itemsize
_BUSY_TIMEOUT_S = 120.0  # concurrent writers wait for each other's (short) transactions
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


class CacheError(RuntimeError):
    """The on-disk cache cannot be used; the message names the file and the fix."""


class _Damaged(sqlite3.DatabaseError):
    """SQLite's own integrity check failed."""


def _is_damage(err: sqlite3.DatabaseError) -> bool:
    """A damaged or foreign file (rebuild it), as opposed to a busy or unreadable one (do not)."""
    if isinstance(err, _Damaged):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(err).lower()  # Python < 3.11
    return "malformed" in text or "not a database" in text


def _checksum(key: bytes, vec: bytes) -> bytes:
    """8-byte BLAKE2b of key + vector: a damaged or zeroed row no longer matches it."""
    return hashlib.blake2b(key + vec, digest_size=8).digest()


class EmbeddingCache:
    """Sentence -> float32 vector store for one namespace.

    Safe for several processes (and threads, each with its own object) writing one namespace at
    once: SQLite in WAL mode with a generous busy timeout, and idempotent inserts. Each row carries
    a checksum; a row that fails it is treated as missing (recomputed and overwritten), never
    returned. A database file that SQLite cannot read is rebuilt empty, with a warning naming it.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None, namespace: str) -> None:
        if not namespace:
            raise ValueError("namespace must be a non-empty string")
        self.namespace = namespace
        base = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        self.path = base / namespace_dirname(namespace)
        self.db_path = self.path / "embeddings.sqlite"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "namespace.txt").write_text(namespace + "\n", encoding="utf-8")
        except OSError as err:
            raise OSError(f"cannot create embedding cache in {str(self.path)!r} ({err}); set "
                          f"${CACHE_ENV_VAR} or pass a writable cache_dir") from err
        self.n_bad_rows = 0  # rows that failed their checksum (recomputed by the caller)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as err:
            if not _is_damage(err):  # locked past the timeout, unreadable folder...: not ours to delete
                raise self._damaged(err) from None
            self._db = self._rebuild()
        self._check_namespace()

    # -- opening, schema, repair ---------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S)
        try:
            _switch_to_wal(db)
            status = db.execute("PRAGMA quick_check").fetchone()[0]
            if status != "ok":
                raise _Damaged(f"quick_check: {status}")
            db.execute("BEGIN IMMEDIATE")  # one process at a time creates or migrates the schema
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB, checksum BLOB)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(vectors)")}
            if "checksum" not in columns:
                self._add_checksums(db)
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _add_checksums(db: sqlite3.Connection) -> None:
        """Migrate a cache written by tpembed 0.1 (no checksums): keep the rows of the stored
        length with finite values, give them checksums from now on, drop the others."""
        db.execute("ALTER TABLE vectors ADD COLUMN checksum BLOB")
        row = db.execute("SELECT v FROM meta WHERE k = 'dim'").fetchone()
        size = int(row[0]) * _ITEMSIZE if row else -1
        updates, dropped = [], []
        for key, vec in db.execute("SELECT key, vec FROM vectors").fetchall():
            vec = bytes(vec or b"")
            if len(vec) == size and np.isfinite(np.frombuffer(vec, dtype=_DTYPE)).all():
                updates.append((_checksum(key, vec), key))
            else:
                dropped.append((key,))
        db.executemany("UPDATE vectors SET checksum = ? WHERE key = ?", updates)
        db.executemany("DELETE FROM vectors WHERE key = ?", dropped)

    def _rebuild(self) -> sqlite3.Connection:
        """Replace an unreadable database with an empty one (once, whichever process gets here first)."""
        with _exclusive(self.path / ".rebuild.lock"):
            try:
                return self._open()  # another process may have rebuilt it meanwhile
            except sqlite3.DatabaseError as err:
                if not _is_damage(err):
                    raise self._damaged(err) from None
                reason = err
            try:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
                db = self._open()
            except (OSError, sqlite3.DatabaseError) as err:
                raise CacheError(
                    f"the embedding cache {str(self.db_path)!r} is damaged ({reason}) and could not be "
                    f"rebuilt ({err}); delete it, or run without the cache (--no-cache)"
                ) from None
        warnings.warn(
            f"the embedding cache {str(self.db_path)!r} was damaged ({reason}); it was rebuilt empty "
            "and its vectors will be recomputed",
            RuntimeWarning,
            stacklevel=3,
        )
        return db

    def _damaged(self, err: sqlite3.DatabaseError) -> CacheError:
        return CacheError(
            f"the embedding cache {str(self.db_path)!r} failed ({err}); delete that file (it is rebuilt "
            "on the next run), or run without the cache (--no-cache)"
        )

    # -- metadata -----------------------------------------------------------------------

    def _meta(self, k: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else row[0]

    def _set_meta_once(self, k: str, v: str) -> str:
        """Insert unless present (several processes may race here); return the stored value."""
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))
        stored = self._meta(k)
        assert stored is not None
        return stored

    def _check_namespace(self) -> None:
        try:
            stored = self._set_meta_once("namespace", self.namespace)
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None
        if stored != self.namespace:  # only on a hash-prefix collision or a hand-edited db
            raise ValueError(f"cache folder {str(self.path)!r} belongs to another namespace")

    @property
    def dim(self) -> int | None:
        """Vector dimension stored in this namespace (None while empty)."""
        v = self._meta("dim")
        return None if v is None else int(v)

    # -- access -------------------------------------------------------------------------

    def get_many(self, sentences: Sequence[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """Look sentences up. Returns ``({input index: vector}, [indices not cached])``.

        A row whose checksum or length does not match counts as not cached (see ``n_bad_rows``).
        """
        keys = [_key(s) for s in sentences]
        found: dict[bytes, bytes] = {}
        uniq = list(dict.fromkeys(keys))
        dim = self.dim
        bad = 0
        try:
            for i in range(0, len(uniq), _SQL_CHUNK):
                chunk = uniq[i:i + _SQL_CHUNK]
                q = f"SELECT key, vec, checksum FROM vectors WHERE key IN ({','.join('?' * len(chunk))})"
                for key, vec, checksum in self._db.execute(q, chunk):
                    vec = bytes(vec) if vec is not None else b""
                    if checksum != _checksum(key, vec) or dim is None or len(vec) != dim * _ITEMSIZE:
                        bad += 1
                        continue
                    found[key] = vec
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None
        if bad:
            self.n_bad_rows += bad
            warnings.warn(
                f"{bad} cached vector(s) in {str(self.db_path)!r} failed their checksum (damaged, or "
                "written by an older tpembed); they are recomputed",
                RuntimeWarning,
                stacklevel=2,
            )
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
        try:
            dim = self.dim
            if dim is None:
                dim = int(self._set_meta_once("dim", str(arr.shape[1])))
            if dim != arr.shape[1]:
                raise ValueError(f"cache namespace holds {dim}-d vectors, got {arr.shape[1]}-d; "
                                 "a different setting needs a different namespace")
            rows = []
            for s, v in zip(sentences, arr):
                key, vec = _key(s), np.ascontiguousarray(v).tobytes()
                rows.append((key, vec, _checksum(key, vec)))
            with self._db:  # one transaction per batch: commit on success, roll back on error
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while busy: SQLite does not call its busy handler when
    two processes switch a fresh database at once, so the loser gets "database is locked" at once."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            code = getattr(err, "sqlite_errorcode", sqlite3.SQLITE_BUSY)
            if code & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock on a file (advisory; POSIX flock, a no-op where unavailable)."""
    with open(lock_path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: rebuilding twice is harmless there, only wasteful
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
