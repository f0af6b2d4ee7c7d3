"""The output folder of a run: Parquet shards, rejects, settings and the manifest.

Layout of ``DIR``::

    run.json                      settings of the run (a rerun must match them to resume)
    embeddings/part-000000.parquet  id, [text,] embedding (fixed_size_list<float32>[dim])
    rejects/part-000000.jsonl     rows that could not be embedded: id, reason, source, row
    rejects.jsonl                 all rejects, in input order (written at the end)
    manifest.json                 written last: config, model identity, counts, wall time, versions

Every file is written under a temporary name and renamed, so a killed run leaves no half file;
a shard's Parquet file is renamed last, so its presence means the shard is complete. A write
that fails (a full or failing disk) removes its temporary file and raises one ``OSError`` naming
the file: the run stops, the shard is not counted, and a rerun after the fault redoes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plan import Shard
from .readers import Row

EMBEDDINGS = "embeddings"
REJECTS = "rejects"


def check_output_dir(path: Path) -> Path:
    """The output folder, checked writable before any work (created if missing)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"output {str(path)!r} is a file; give a folder")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {str(path)!r} is not writable")
    (path / EMBEDDINGS).mkdir(exist_ok=True)
    (path / REJECTS).mkdir(exist_ok=True)
    return path


def shard_file(out: Path, shard: Shard) -> Path:
    return out / EMBEDDINGS / f"{shard.name}.parquet"


def rejects_file(out: Path, shard: Shard) -> Path:
    return out / REJECTS / f"{shard.name}.jsonl"


def is_done(out: Path, shard: Shard) -> bool:
    """A shard is done when its Parquet file exists (it is renamed into place last)."""
    return shard_file(out, shard).exists()


def _tmp(path: Path) -> Path:
    # a dot name: pyarrow / pandas skip it when reading the folder
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_failed(path: Path, err: OSError) -> OSError:
    """One clear error for a failed write of ``path`` (keeps ``errno``: ENOSPC, EIO ...)."""
    reason = os.strerror(err.errno) if err.errno else (str(err) or type(err).__name__)
    error = OSError(f"could not write {path}: {reason}".replace("\n", " "))
    error.errno = err.errno
    return error


def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename ``tmp`` over ``path``; on failure remove ``tmp`` and raise :func:`write_failed`."""
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_failed(path, err) from err


#: key of a shard file's metadata: how many of its embedded texts were empty (or blank)
EMPTY_TEXTS_KEY = "tpembed.empty_texts"


def write_shard(
    out: Path, shard: Shard, rows: Sequence[Row], vectors: np.ndarray, rejected: Sequence[tuple[int, Row]],
    *, keep_text: bool,
) -> dict[str, int]:
    """Write a shard's rejects, then its embeddings (atomically, in that order); return its counts.

    ``rows`` are the embedded rows (``vectors`` row for row); ``rejected`` pairs each rejected
    row with its row number in the file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write_rejects(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for index, row in rejected:
                record = {"id": row.id, "reason": row.reason, "source": shard.path, "row": index + 1}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    write_atomic(rejects_file(out, shard), write_rejects)

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    columns = {"id": pa.array([r.id for r in rows], pa.string())}
    if keep_text:
        columns["text"] = pa.array([r.text for r in rows], pa.string())
    columns["embedding"] = embedding
    empty = sum(1 for r in rows if not (r.text or "").strip())
    # the count of empty texts rides in the file's metadata, so a resumed run still counts them
    table = pa.table(columns).replace_schema_metadata({EMPTY_TEXTS_KEY: str(empty)})
    write_atomic(shard_file(out, shard), lambda tmp: pq.write_table(table, tmp))  # last: the shard is done
    return {"index": shard.index, "rows": shard.rows, "embedded": len(rows), "rejected": len(rejected),
            "empty_texts": empty}


def shard_counts(out: Path, shard: Shard) -> dict[str, int]:
    """The counts of a finished shard, read back from its files (for shards done by an earlier run)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(shard_file(out, shard))
    embedded = parquet.metadata.num_rows
    empty = int((parquet.schema_arrow.metadata or {}).get(EMPTY_TEXTS_KEY.encode(), b"0"))
    with rejects_file(out, shard).open(encoding="utf-8") as f:
        rejected = sum(1 for _ in f)
    return {"index": shard.index, "rows": shard.rows, "embedded": embedded, "rejected": rejected,
            "empty_texts": empty}


def remove_leftovers(out: Path) -> int:
    """Delete the temporary files of killed writers (at the end of a complete run); return how many."""
    stale = [p for folder in (out / EMBEDDINGS, out / REJECTS) for p in folder.glob(".*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def merge_rejects(out: Path, shards: Sequence[Shard]) -> Path:
    """Concatenate the shards' rejects into ``rejects.jsonl``, in input order."""
    target = out / "rejects.jsonl"

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for shard in shards:
                with rejects_file(out, shard).open(encoding="utf-8") as part:
                    for line in part:
                        f.write(line)

    write_atomic(target, write)
    return target


def embedding_dim(out: Path, shards: Sequence[Shard]) -> int | None:
    """The vector length stored in the shards (None when no row was embedded)."""
    import pyarrow.parquet as pq

    for shard in shards:
        field = pq.read_schema(shard_file(out, shard)).field("embedding")
        return field.type.list_size
    return None


def manifest(
    out: Path, shards: Sequence[Shard], counts: Sequence[dict[str, int]], extra: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of a finished run (the caller writes it last)."""
    return {
        "rows_read": sum(c["rows"] for c in counts),
        "embedded": sum(c["embedded"] for c in counts),
        "rejected": sum(c["rejected"] for c in counts),
        "empty_texts": sum(c.get("empty_texts", 0) for c in counts),
        "embedding_dim": embedding_dim(out, shards),
        "shards": [
            {"file": f"{EMBEDDINGS}/{s.name}.parquet", "source": s.path, "first_row": s.start + 1, **c}
            for s, c in zip(shards, counts)
        ],
        **extra,
    }
