"""Input files of a corpus (txt, jsonl, csv, parquet): find them, count them, stream row ranges.

Rows are read a range at a time, never a whole file. Every input row comes out, once: a usable
text, or a reason why it cannot be embedded (it then goes to ``rejects.jsonl``, never dropped).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_TEXT_COLUMN = "text"
DEFAULT_ID_COLUMN = "id"
_CHUNK_ROWS = 4096  # pyarrow batch size while streaming csv / parquet


@dataclass(frozen=True)
class Row:
    """One input row: its id and either ``text`` (usable) or ``reason`` (rejected)."""

    id: str
    text: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text and the id (jsonl / csv / parquet; a txt file is all text).

    ``id`` None: use the ``id`` column where a file has one, else ``file:row`` (row from 1).
    """

    text: str = DEFAULT_TEXT_COLUMN
    id: str | None = None


def find_inputs(inputs: list[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``inputs`` (files, folders, globs), in a stable order, no duplicates.

    A folder gives its supported files (recursively, sorted); a glob its matches (sorted).
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
            if not files:
                raise ValueError(f"folder {text!r} holds no {'/'.join(FORMATS)} files")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(text):
            files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
            if not files:
                raise ValueError(f"no file matches {text!r}")
        else:
            raise FileNotFoundError(f"input {text!r} does not exist")
        for file in files:
            if file.suffix.lower() not in FORMATS:
                raise ValueError(f"input {str(file)!r}: unsupported format; use {', '.join(FORMATS)}")
            found.append(file.resolve())
    return list(dict.fromkeys(found))


def file_format(path: Path) -> str:
    """``txt``, ``jsonl``, ``csv`` or ``parquet`` from the file's suffix."""
    return FORMATS[path.suffix.lower()]


def check_columns(path: Path, columns: Columns) -> None:
    """Fail fast when a csv / parquet file lacks the text column, or a given id column.

    jsonl rows are checked one by one (a row without the field is a reject, not an error).
    """
    fmt = file_format(path)
    if fmt not in ("csv", "parquet"):
        return
    names = _parquet_schema(path).names if fmt == "parquet" else _csv_header(path)
    for role, name in (("text", columns.text), ("id", columns.id)):
        if name is not None and name not in names:
            raise ValueError(f"{path}: no {role} column {name!r} (columns: {', '.join(names)}); use --{role}-column")


def count_rows(path: Path, every: int) -> tuple[int, list[int]]:
    """Number of rows of a file, and for line files the byte offset of every ``every``-th row.

    The offsets let a worker start reading a range of rows without scanning what comes before.
    """
    fmt = file_format(path)
    if fmt == "parquet":
        return _parquet_schema_file(path).metadata.num_rows, []
    if fmt == "csv":
        return sum(batch.num_rows for batch in _csv_batches(path, [])), []
    offsets, n, position = [], 0, 0
    with path.open("rb") as f:
        for line in f:
            if n % every == 0:
                offsets.append(position)
            position += len(line)
            n += 1
    return n, offsets


def read_rows(path: Path, start: int, stop: int, columns: Columns, offset: int = 0) -> Iterator[Row]:
    """Rows ``[start, stop)`` of a file (0-based); ``offset`` is the byte where row ``start`` begins (line files)."""
    fmt = file_format(path)
    if fmt in ("txt", "jsonl"):
        yield from _read_lines(path, fmt, start, stop, columns, offset)
    else:
        yield from _read_table(path, fmt, start, stop, columns)


def default_id(path: Path, index: int) -> str:
    """``name:row`` with the row counted from 1 (a txt file's line number)."""
    return f"{path.name}:{index + 1}"


def check_text(value: Any) -> str | None:
    """Why ``value`` cannot be embedded, or None when it can.

    An empty (or all-blank) text is a text: it is embedded as the prompt around an empty sentence,
    the same vector as ``Encoder.encode("")`` (docs/guides/input-rules.md), and counted in the
    run's ``empty_texts``. A missing value (null) is not a text.
    """
    if value is None:
        return "null text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text is not valid Unicode"
    return None


def _row(id_: str, value: Any) -> Row:
    reason = check_text(value)
    return Row(id_, text=value if reason is None else None, reason=reason)


def _read_lines(path: Path, fmt: str, start: int, stop: int, columns: Columns, offset: int) -> Iterator[Row]:
    with path.open("rb") as f:
        f.seek(offset)
        index = start
        if offset == 0:  # no offset known: skip lines up to start
            for _ in range(start):
                f.readline()
        while index < stop:
            raw = f.readline()
            if not raw:
                raise ValueError(f"{path} ended at row {index}, before row {stop}: was it changed during the run?")
            yield _line_row(path, fmt, index, raw, columns)
            index += 1


def _line_row(path: Path, fmt: str, index: int, raw: bytes, columns: Columns) -> Row:
    id_ = default_id(path, index)
    try:
        line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        return Row(id_, reason="line is not valid UTF-8")
    if fmt == "txt":
        return _row(id_, line)
    if not line.strip():
        return Row(id_, reason="empty line")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return Row(id_, reason=f"invalid JSON: {err.msg}")
    if not isinstance(record, dict):
        return Row(id_, reason=f"JSON line is not an object ({type(record).__name__})")
    id_column = columns.id or DEFAULT_ID_COLUMN
    if id_column in record:
        if record[id_column] is None:
            return Row(id_, reason=f"null id in column {id_column!r}")
        id_ = str(record[id_column])
    elif columns.id is not None:
        return Row(id_, reason=f"missing id column {columns.id!r}")
    if columns.text not in record:
        return Row(id_, reason=f"no {columns.text!r} field")
    return _row(id_, record[columns.text])


def _read_table(path: Path, fmt: str, start: int, stop: int, columns: Columns) -> Iterator[Row]:
    names = _parquet_schema(path).names if fmt == "parquet" else _csv_header(path)
    id_column = columns.id or (DEFAULT_ID_COLUMN if DEFAULT_ID_COLUMN in names else None)
    wanted = [c for c in dict.fromkeys([columns.text, id_column]) if c is not None]
    batches = _parquet_batches(path, wanted) if fmt == "parquet" else _csv_batches(path, wanted, columns.text)
    index = 0
    for batch in batches:
        if index + batch.num_rows <= start:
            index += batch.num_rows
            continue
        texts = batch.column(columns.text).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else [None] * batch.num_rows
        for text, id_value in zip(texts, ids):
            if start <= index < stop:
                if id_column and id_value is None:
                    yield Row(default_id(path, index), reason=f"null id in column {id_column!r}")
                else:
                    yield _row(str(id_value) if id_column else default_id(path, index), text)
            index += 1
            if index >= stop:
                return
    if index < stop:
        raise ValueError(f"{path} ended at row {index}, before row {stop}: was it changed during the run?")


def _parquet_schema_file(path: Path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def _parquet_schema(path: Path):
    return _parquet_schema_file(path).schema_arrow


def _parquet_batches(path: Path, wanted: list[str]):
    return _parquet_schema_file(path).iter_batches(batch_size=_CHUNK_ROWS, columns=wanted)


def _csv_parse_options():
    import pyarrow.csv as pcsv

    return pcsv.ParseOptions(newlines_in_values=True)  # a quoted text may span lines


def _csv_header(path: Path) -> list[str]:
    import pyarrow.csv as pcsv

    with pcsv.open_csv(path, parse_options=_csv_parse_options()) as reader:
        return reader.schema.names


def _csv_batches(path: Path, wanted: list[str], text_column: str | None = None):
    """Stream a csv file; every wanted column is read as a string (a number-like text stays text)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        include_columns=wanted or None,
        column_types={c: pa.string() for c in wanted},
        strings_can_be_null=False,  # an empty field is an empty text, embedded as such
    )
    read = pcsv.ReadOptions(block_size=1 << 20)
    with pcsv.open_csv(path, read_options=read, parse_options=_csv_parse_options(), convert_options=convert) as reader:
        yield from reader
