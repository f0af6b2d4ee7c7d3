"""Small corpora in every format, and the packaged model loaded once for the comparisons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_vectors_close  # noqa: F401  (shared with the server tests)

SENTENCES = [
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the cat sat on the mat and looked at the dog .",
    "stocks fell sharply on tuesday after the report .",
    "two children are running through a field of flowers .",
    "what is the capital of france ?",
    "a dog runs after a red ball in the park .",
    "the weather will be sunny tomorrow .",
]


def sentences(n: int) -> list[str]:
    """``n`` distinct sentences (the base ones with a number)."""
    return [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(n)]


def write_corpus(folder: Path, texts: list[str], fmt: str, name: str = "corpus") -> Path:
    """``texts`` as one file of format ``fmt`` (jsonl / csv / parquet get a ``text`` column)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{fmt}"
    if fmt == "txt":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    elif fmt == "csv":
        pcsv.write_csv(pa.table({"text": texts}), path)
    else:
        pq.write_table(pa.table({"text": texts}), path)
    return path


def read_output(out: Path):
    """(ids, vectors) of a run's output folder, in shard order."""
    import pyarrow.parquet as pq

    table = pq.read_table(out / "embeddings")
    return table.column("id").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


@pytest.fixture(scope="session")
def smollm2():
    """The packaged default config's Encoder (the reference vectors): ``embed_corpus`` with nothing
    named uses the same default config as ``Encoder()``."""
    from tpembed import Encoder

    return Encoder()
