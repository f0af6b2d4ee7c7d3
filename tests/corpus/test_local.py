"""The local engine on the packaged model: same vectors as Encoder.encode, every format, rejects, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tpembed.corpus import embed_corpus

from .conftest import assert_vectors_close, read_output, sentences, write_corpus

pytestmark = pytest.mark.packaged
REPO = Path(__file__).resolve().parents[2]


def test_every_format_and_a_mixed_folder_give_the_encoders_vectors(tmp_path, smollm2):
    texts = sentences(6)
    folder = tmp_path / "in"
    for fmt in ("txt", "jsonl", "csv", "parquet"):
        write_corpus(folder, texts, fmt)
    result = embed_corpus(folder, tmp_path / "out", rows_per_shard=4, progress=False)
    ids, vectors = read_output(tmp_path / "out")
    names = ["corpus.csv", "corpus.jsonl", "corpus.parquet", "corpus.txt"]  # the folder's sorted order
    assert ids == [f"{n}:{i + 1}" for n in names for i in range(len(texts))]
    expected = smollm2.encode(texts)
    for k in range(4):  # each file's vectors are the Encoder's
        assert_vectors_close(vectors[k * 6:(k + 1) * 6], expected)
    assert result["rows_read"] == result["embedded"] == 24 and result["rejected"] == 0
    assert result["embedding_dim"] == vectors.shape[1] == smollm2.embedding_dim
    assert len(result["shards"]) == 8  # shards never span two files: 4 + 2 rows per file
    assert result["model"]["sha256"] == smollm2.loaded.identity["sha256"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["embedded"] == 24 and manifest["versions"]["torch"]


def test_rejects_listed_with_reasons_and_the_rest_embedded(tmp_path, smollm2):
    path = tmp_path / "mixed.jsonl"
    records = [{"text": "a man is playing a guitar ."}, {"text": ""}, {"text": None}, {"text": 3},
               {"title": "no text"}, {"text": "someone plays music ."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = embed_corpus(path, tmp_path / "out", rows_per_shard=2, keep_text=True, progress=False)
    # the empty text is a text (docs/guides/input-rules.md): embedded, and counted
    assert (result["rows_read"], result["embedded"], result["rejected"], result["empty_texts"]) == (6, 3, 3, 1)
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [
        ("mixed.jsonl:3", "null text"), ("mixed.jsonl:4", "text is not a string (int)"),
        ("mixed.jsonl:5", "no 'text' field")]
    ids, vectors = read_output(tmp_path / "out")
    assert ids == ["mixed.jsonl:1", "mixed.jsonl:2", "mixed.jsonl:6"]
    assert_vectors_close(vectors, smollm2.encode([records[0]["text"], "", records[5]["text"]]))
    assert_vectors_close(vectors[1:2], smollm2.encode("")[None])  # the library's vector for ""
    # a resumed run reads the count back from the shards
    again = embed_corpus(path, tmp_path / "out", rows_per_shard=2, keep_text=True, progress=False)
    assert again["shards_resumed"] == 3 and again["empty_texts"] == 1


def test_rerun_with_other_settings_is_refused(tmp_path):
    path = write_corpus(tmp_path, sentences(3), "txt")
    embed_corpus(path, tmp_path / "out", rows_per_shard=2, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(identity\.tp differ"):
        embed_corpus(path, tmp_path / "out", rows_per_shard=2, progress=False, tp_exiting_index=5)
    with pytest.raises(ValueError, match=r"rows_per_shard differ"):
        embed_corpus(path, tmp_path / "out", rows_per_shard=3, progress=False)
    # settings that change no vector may differ; a finished run is not redone
    result = embed_corpus(path, tmp_path / "out", rows_per_shard=2, progress=False, batch_size=1)
    assert result["shards_resumed"] == 2 and result["embedded"] == 3 and result["model"]["sha256"]


def test_a_run_written_before_the_identity_still_resumes(tmp_path):
    """run.json of earlier releases held the settings minus the free ones and the model's fingerprint."""
    from tpembed.config import free_settings, resolve_config
    from tpembed.models import default_cache_dir, file_sha256, packaged_model_file

    path = write_corpus(tmp_path, sentences(3), "txt")
    out = tmp_path / "out"
    embed_corpus(path, out, rows_per_shard=2, progress=False)
    settings = json.loads((out / "run.json").read_text())
    config = resolve_config().encoder_config()
    sha = file_sha256(packaged_model_file(config.model, default_cache_dir()), default_cache_dir())
    legacy = {k: v for k, v in settings.items() if k != "identity"}
    legacy["encoder"] = {k: v for k, v in config.model_dump().items() if k not in free_settings()}
    legacy["model"] = "sha256:" + sha
    (out / "run.json").write_text(json.dumps({**legacy, "encoder": {**legacy["encoder"], "seed": 3}}))
    with pytest.raises(ValueError, match=r"other settings \(encoder\.seed differ"):
        embed_corpus(path, out, rows_per_shard=2, progress=False)
    (out / "run.json").write_text(json.dumps(legacy))
    result = embed_corpus(path, out, rows_per_shard=2, progress=False)
    assert result["shards_resumed"] == 2 and result["embedded"] == 3
    assert json.loads((out / "run.json").read_text()) == settings  # rewritten in today's form


def test_sigkill_mid_run_then_rerun_keeps_finished_shards_and_ends_complete(tmp_path, smollm2):
    texts = sentences(64)
    path = write_corpus(tmp_path, texts, "txt")
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from tpembed.cli import app; app()", "embed", str(path), "-o", str(out),
               "--rows-per-shard", "4", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shards = out / "embeddings"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(shards.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert 2 <= len(finished) < 16, "the run must be killed part-way"
    assert not (out / "manifest.json").exists()

    result = embed_corpus(path, out, rows_per_shard=4, progress=False)
    assert result["shards_resumed"] == len(finished)
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet") if p.name in finished} == finished
    assert not list(shards.glob(".*")), "no temporary file left behind"
    ids, vectors = read_output(out)
    assert ids == [f"corpus.txt:{i + 1}" for i in range(64)]  # every row exactly once
    # each shard is what an uninterrupted run computes: the same texts in the same batches (the
    # killed process ran 1 thread, this one more: float noise only)
    per_shard = np.concatenate([smollm2.encode(texts[i:i + 4]) for i in range(0, 64, 4)])
    assert_vectors_close(vectors, per_shard, rel=1e-5)


def test_without_pyarrow_the_error_names_the_extra_before_any_work(tmp_path, monkeypatch):
    path = write_corpus(tmp_path, sentences(3), "txt")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tpembed\[corpus\]'"):
        embed_corpus(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
