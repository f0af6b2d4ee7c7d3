"""A corpus run on a failing disk: a shard write that fails (ENOSPC, EIO) stops the run with one clear
error naming the file, leaves no partial shard counted, and a rerun after the fault resumes and ends
with every row exactly once and the vectors of an uninterrupted run. Local engine, tiny model."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.corpus import embed_corpus

from .conftest import assert_vectors_close, read_output, sentences, write_corpus

ROWS, PER_SHARD = 24, 4
SHARDS = ROWS // PER_SHARD
TINY = {"tp_exiting_index": 3}  # the tiny model has 4 decoder layers


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's small matrices run far faster on one thread than on two busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def corpus(tmp_path, tiny_folder):
    """(input file, the ids and vectors of an uninterrupted run)."""
    path = write_corpus(tmp_path / "in", sentences(ROWS), "txt")
    embed_corpus(path, tmp_path / "reference", model=str(tiny_folder), rows_per_shard=PER_SHARD, progress=False,
                 **TINY)
    ids, vectors = read_output(tmp_path / "reference")
    assert ids == [f"corpus.txt:{i + 1}" for i in range(ROWS)]
    return path, ids, vectors


def shard(out: Path, index: int) -> Path:
    return out / "embeddings" / f"part-{index:06d}.parquet"


def check_stopped_at(out: Path, failed: int) -> None:
    """Shards before ``failed`` are done; ``failed`` and after are not; nothing half written is left."""
    assert [shard(out, i).exists() for i in range(SHARDS)] == [i < failed for i in range(SHARDS)]
    assert not [p.name for p in (out / "embeddings").iterdir() if p.name.startswith(".")], "a temporary file is left"
    assert not (out / "manifest.json").exists()


def check_complete(out: Path, corpus, resumed: int, result: dict | None = None) -> None:
    _, ids_reference, vectors_reference = corpus
    ids, vectors = read_output(out)
    assert ids == ids_reference  # every row exactly once
    assert_vectors_close(vectors, vectors_reference, rel=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_read"] == manifest["embedded"] == ROWS and manifest["shards_resumed"] == resumed
    assert not [p for p in (out / "embeddings").iterdir() if p.name.startswith(".")]
    if result is not None:
        assert result == manifest


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_stops_the_run_naming_the_shard_then_a_rerun_completes(tmp_path, corpus, tiny_folder):
    """A real ENOSPC from the kernel: shard 3's temporary file is a link to /dev/full."""
    out = tmp_path / "out"
    (out / "embeddings").mkdir(parents=True)
    target = shard(out, 3)
    (out / "embeddings" / f".{target.name}.{os.getpid()}.tmp").symlink_to("/dev/full")  # the writer's tmp name
    with pytest.raises(OSError) as caught:
        embed_corpus(corpus[0], out, model=str(tiny_folder), rows_per_shard=PER_SHARD, progress=False, **TINY)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"could not write {target}: {os.strerror(errno.ENOSPC)}"
    check_stopped_at(out, 3)

    result = embed_corpus(corpus[0], out, model=str(tiny_folder), rows_per_shard=PER_SHARD, progress=False, **TINY)
    check_complete(out, corpus, resumed=3, result=result)


def test_a_failing_rename_is_one_error_line_in_the_cli_then_a_rerun_completes(tmp_path, corpus, tiny_folder,
                                                                              monkeypatch):
    """EIO when shard 2's finished temporary file is renamed into place (the file is whole: only the
    rename fails). Through `tpembed embed`: one `error:` line naming the shard, exit status 2."""
    from tpembed.corpus import writer

    out = tmp_path / "out"
    target = shard(out, 2)
    real_replace, failed = os.replace, []

    def failing_replace(src, dst, *args, **kwargs):
        if Path(dst) == target and not failed:
            failed.append(Path(src))
            assert Path(src).stat().st_size > 0  # the whole shard was written under its temporary name
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(writer.os, "replace", failing_replace)
    args = ["embed", str(corpus[0]), "-o", str(out), "--model", str(tiny_folder), "--tp-exiting-index", "3",
            "--rows-per-shard", str(PER_SHARD), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: could not write {target}: {os.strerror(errno.EIO)}"], result.output
    assert failed and not failed[0].exists(), "the temporary file is removed"
    check_stopped_at(out, 2)

    again = CliRunner().invoke(app, args)  # the disk is fine again (failing_replace fails once)
    assert again.exit_code == 0, again.output
    assert f"embedded {ROWS} of {ROWS} rows in {SHARDS} shards (2 from an earlier run)" in again.output
    check_complete(out, corpus, resumed=2)
