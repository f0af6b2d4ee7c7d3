"""On-disk embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from tpembed.cache import EmbeddingCache, cached, default_cache_dir, namespace_dirname


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
