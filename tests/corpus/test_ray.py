"""The Ray Data engine on a local Ray (num_cpus=2): same output as the local engine, survives a dead actor."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tpembed.corpus import embed_corpus

from .conftest import assert_vectors_close, read_output, sentences, write_corpus

pytestmark = pytest.mark.packaged
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (it takes ~10 s to start)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_output_equals_local_output_and_the_encoder(tmp_path, smollm2):
    texts = sentences(10)
    folder = tmp_path / "in"
    write_corpus(folder, texts[:6], "txt")
    bad = [{"text": t} for t in texts[6:]] + [{"text": None}, {"text": 4}]
    (folder / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    local = embed_corpus(folder, tmp_path / "local", rows_per_shard=3, progress=False)
    remote = embed_corpus(folder, tmp_path / "ray", rows_per_shard=3, engine="ray", workers=2, progress=False)
    ids_local, vectors_local = read_output(tmp_path / "local")
    ids_ray, vectors_ray = read_output(tmp_path / "ray")
    assert ids_ray == ids_local and len(ids_ray) == 10
    assert_vectors_close(vectors_ray, vectors_local, rel=1e-5)  # same batches (thread counts differ: float noise)
    assert_vectors_close(vectors_ray, smollm2.encode(texts))
    assert (tmp_path / "ray" / "rejects.jsonl").read_text() == (tmp_path / "local" / "rejects.jsonl").read_text()
    for key in ("rows_read", "embedded", "rejected", "embedding_dim", "model"):
        assert remote[key] == local[key], key
    assert remote["engine"] == "ray" and remote["extra_versions"]["ray"] == ray.__version__


def _actor_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if any("ShardEmbedder" in part for part in (p.info["cmdline"] or []))]


def test_an_actor_killed_mid_run_still_gives_every_row_once(tmp_path, smollm2):
    texts = sentences(48)
    path = write_corpus(tmp_path, texts, "txt")
    out = tmp_path / "out"
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        embed_corpus(path, out, rows_per_shard=4, engine="ray", workers=2, progress=False)))
    worker.start()
    deadline, killed = time.time() + 300, []  # a loaded machine starts actors slowly
    while time.time() < deadline and worker.is_alive() and not killed:
        pids = _actor_pids()
        if pids and list((out / "embeddings").glob("*.parquet")):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        time.sleep(0.05)
    worker.join(300)
    assert killed, "no actor was killed: the run ended first"
    assert result["rows_read"] == result["embedded"] == 48
    ids, vectors = read_output(out)
    assert ids == [f"corpus.txt:{i + 1}" for i in range(48)]  # every row exactly once
    assert_vectors_close(vectors, smollm2.encode(texts))


def test_a_pool_that_cannot_fit_is_refused_or_warned():
    from tpembed.corpus.ray_engine import _check_resources

    _check_resources({"CPU": 2.0}, 2, 1.0, 0.0, strict=True)
    with pytest.raises(ValueError, match="3 Ray workers x 1 CPUs need 3 CPUs; the cluster has 2"):
        _check_resources({"CPU": 2.0}, 3, 1.0, 0.0, strict=True)
    with pytest.warns(UserWarning, match="need 2 GPUs; the cluster has 0"):
        _check_resources({"CPU": 8.0}, 2, 1.0, 1.0, strict=False)


def test_a_failed_write_on_an_actor_is_one_error_naming_the_file_then_a_rerun_completes(tmp_path, tiny_folder):
    """The write fails inside the actor (its file's place is taken by a folder: EISDIR); the driver
    raises the writer's own one-line error, as the local engine does, and a rerun completes."""
    path = write_corpus(tmp_path / "in", sentences(12), "txt")
    out = tmp_path / "out"
    settings = dict(model=str(tiny_folder), tp_exiting_index=3, rows_per_shard=4, engine="ray", workers=1,
                    progress=False)
    blocked = out / "rejects" / "part-000001.jsonl"
    blocked.mkdir(parents=True)
    with pytest.raises(OSError) as caught:
        embed_corpus(path, out, **settings)
    assert str(caught.value).startswith(f"could not write {blocked}: ") and "\n" not in str(caught.value)
    assert not (out / "embeddings" / "part-000001.parquet").exists()
    blocked.rmdir()
    result = embed_corpus(path, out, **settings)
    ids, _ = read_output(out)
    assert ids == [f"corpus.txt:{i + 1}" for i in range(12)] and result["embedded"] == 12
