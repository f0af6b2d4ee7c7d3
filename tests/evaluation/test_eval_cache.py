"""On-disk embedding cache."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3

import numpy as np
import pytest

from tpembed.embedding_cache import CacheError, EmbeddingCache, cached, default_cache_dir, namespace_dirname


class Recorder:
    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, sentences: list[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.seen.extend(sentences)
        # vector depends only on the sentence, so order mistakes are detectable
        return np.array([[len(s), sum(map(ord, s)) % 97] for s in sentences], dtype=np.float64)


SENTS = ["a cat .", "a dog .", "a cat .", "the bird", "", "ünïcode ✓"]


def _expected(sentences):
    return np.array([[len(s), sum(map(ord, s)) % 97] for s in sentences], dtype=np.float32)


def test_second_call_encodes_nothing(tmp_path):
    rec = Recorder()
    with EmbeddingCache(tmp_path, "model=a|layer=-1") as cache:
        fn = cached(rec, cache)
        first = fn(SENTS)
        assert sorted(rec.seen) == sorted(set(SENTS))  # duplicates encoded once
        np.testing.assert_array_equal(first, _expected(SENTS))
        second = fn(list(reversed(SENTS)))
        assert rec.calls == 1
        np.testing.assert_array_equal(second, _expected(list(reversed(SENTS))))
        assert len(cache) == len(set(SENTS))
    # persisted: a new cache object on the same folder still has everything
    with EmbeddingCache(tmp_path, "model=a|layer=-1") as cache:
        hits, missing = cache.get_many(["a dog .", "new one"])
        assert missing == [1] and list(hits) == [0]
        np.testing.assert_array_equal(hits[0], _expected(["a dog ."])[0])


def test_namespaces_are_separate(tmp_path):
    with EmbeddingCache(tmp_path, "ns-1") as c1, EmbeddingCache(tmp_path, "ns-2") as c2:
        c1.put_many(["x"], np.ones((1, 2)))
        assert c2.get_many(["x"]) == ({}, [0])
        assert c1.path != c2.path
        assert (c1.path / "namespace.txt").read_text().strip() == "ns-1"
        assert c1.path.name == namespace_dirname("ns-1")


def test_interrupted_run_resumes(tmp_path):
    sents = [f"s{i}" for i in range(10)]
    with EmbeddingCache(tmp_path, "ns") as cache:
        with pytest.raises(KeyboardInterrupt):
            cached(Recorder(fail_after=2), cache, batch_size=3)(sents)
        assert len(cache) == 6  # two committed batches survive
        rec = Recorder()
        out = cached(rec, cache, batch_size=3)(sents)
        assert rec.seen == sents[6:]
        np.testing.assert_array_equal(out, _expected(sents))


def test_dim_mismatch_and_shape_errors(tmp_path):
    with EmbeddingCache(tmp_path, "ns") as cache:
        cache.put_many(["a"], np.zeros((1, 4)))
        with pytest.raises(ValueError, match="4-d"):
            cache.put_many(["b"], np.zeros((1, 5)))
        with pytest.raises(ValueError, match="shape"):
            cache.put_many(["b", "c"], np.zeros((1, 4)))
        assert cache.dim == 4


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TPEMBED_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "tpembed")


def test_unwritable_cache_dir_is_clear(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="TPEMBED_CACHE"):
        EmbeddingCache(blocker, "ns")


# ---- integrity and concurrency ------------------------------------------------------------


def _writer(cache_dir: str, n_namespaces: int, sentences: list[str], barrier, failures) -> None:
    """One process: open each fresh namespace at the same moment as its twin, then fill it."""
    try:
        for k in range(n_namespaces):
            barrier.wait(timeout=60)
            with EmbeddingCache(cache_dir, f"ns-{k}") as cache:
                out = cached(Recorder(), cache, batch_size=7)(sentences)
                np.testing.assert_array_equal(out, _expected(sentences))
    except BaseException as err:  # reported to the parent, which fails the test
        failures.put(f"{type(err).__name__}: {err}")
        barrier.abort()


def test_two_processes_filling_the_same_fresh_namespaces(tmp_path):
    sentences = [f"sentence number {i} ." for i in range(60)]
    halves = (sentences[:40], sentences[20:])  # overlapping work, so both write the same rows
    ctx = multiprocessing.get_context("fork")  # the children only use sqlite and numpy
    barrier, failures = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 20, half, barrier, failures)) for half in halves]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert failures.empty(), failures.get()
    assert [p.exitcode for p in procs] == [0, 0]
    for k in range(20):
        with EmbeddingCache(tmp_path, f"ns-{k}") as cache:
            hits, missing = cache.get_many(sentences)
            assert not missing
            np.testing.assert_array_equal(np.stack([hits[i] for i in range(60)]), _expected(sentences))


def _db_file(tmp_path, namespace="ns"):
    with EmbeddingCache(tmp_path, namespace) as cache:
        cached(Recorder(), cache)(SENTS)
        return cache.db_path


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_rebuilt_with_a_warning_naming_it(tmp_path, damage):
    path = _db_file(tmp_path)
    for suffix in ("-wal", "-shm"):
        (path.parent / (path.name + suffix)).unlink(missing_ok=True)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        path.write_bytes(data[: len(data) // 2 + 100])  # cut mid-page
    with pytest.warns(RuntimeWarning, match=f"{path.name}.*damaged.*rebuilt"):
        cache = EmbeddingCache(tmp_path, "ns")
    with cache:
        rec = Recorder()
        out = cached(rec, cache)(SENTS)
        assert sorted(rec.seen) == sorted(set(SENTS))  # everything recomputed
        np.testing.assert_array_equal(out, _expected(SENTS))


def test_a_database_that_cannot_be_rebuilt_is_one_clear_error(tmp_path, monkeypatch):
    path = _db_file(tmp_path)
    path.write_bytes(b"garbage" * 1000)
    real_open = EmbeddingCache._open

    def always_broken(self):
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(EmbeddingCache, "_open", always_broken)
    with pytest.raises(CacheError, match=f"{path.name}.*delete it, or run without the cache"):
        EmbeddingCache(tmp_path, "ns")
    monkeypatch.setattr(EmbeddingCache, "_open", real_open)


@pytest.mark.parametrize("damage", ["zeroed", "short", "flipped", "no checksum"])
def test_a_damaged_row_is_recomputed_never_returned(tmp_path, damage):
    path = _db_file(tmp_path)
    victim = "a dog ."
    db = sqlite3.connect(path)
    key = hashlib.sha1(victim.encode()).digest()
    vec = db.execute("SELECT vec FROM vectors WHERE key = ?", (key,)).fetchone()[0]
    changes = {
        "zeroed": ("vec", bytes(len(vec))),
        "short": ("vec", vec[:-4]),
        "flipped": ("vec", bytes([vec[0] ^ 1]) + vec[1:]),
        "no checksum": ("checksum", None),
    }
    column, value = changes[damage]
    with db:
        db.execute(f"UPDATE vectors SET {column} = ? WHERE key = ?", (value, key))
    db.close()
    with EmbeddingCache(tmp_path, "ns") as cache:
        rec = Recorder()
        with pytest.warns(RuntimeWarning, match="1 cached vector.*checksum"):
            out = cached(rec, cache)(SENTS)
        assert rec.seen == [victim]  # only the damaged row is encoded again
        np.testing.assert_array_equal(out, _expected(SENTS))
        assert cache.get_many([victim])[1] == []  # and it is stored sound again


def test_a_cache_from_tpembed_0_1_keeps_its_sound_rows(tmp_path):
    """Old databases have no checksum column: sound rows get checksums, malformed ones are dropped."""
    with EmbeddingCache(tmp_path, "ns") as cache:
        path = cache.db_path
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    db.execute("CREATE TABLE vectors (key BLOB PRIMARY KEY, vec BLOB)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("namespace", "ns"), ("dim", "2")])
    vectors = _expected(SENTS)
    rows = [(hashlib.sha1(s.encode()).digest(), v.tobytes()) for s, v in zip(SENTS, vectors)]
    rows[1] = (rows[1][0], rows[1][1][:4])  # "a dog ." stored short: dropped by the migration
    db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
    db.commit()
    db.close()
    with EmbeddingCache(tmp_path, "ns") as cache:
        rec = Recorder()
        out = cached(rec, cache)(SENTS)
    assert rec.seen == ["a dog ."]
    np.testing.assert_array_equal(out, vectors)


def test_a_busy_database_is_an_error_and_is_never_deleted(tmp_path, monkeypatch):
    import tpembed.embedding_cache

    path = _db_file(tmp_path)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    monkeypatch.setattr(tpembed.embedding_cache, "_BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(CacheError, match="locked"):
            EmbeddingCache(tmp_path, "ns")
    finally:
        holder.rollback()
        holder.close()
    with EmbeddingCache(tmp_path, "ns") as cache:
        assert len(cache) == len(set(SENTS))  # nothing was thrown away
