"""Readers and plan without a model: every row once, ids, reasons, row ranges, fast errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tpembed.corpus.plan import check_resume, plan_shards
from tpembed.corpus.readers import Columns, check_columns, find_inputs, read_rows

from .conftest import sentences, write_corpus


def _all_rows(files, rows_per_shard, columns=Columns()):
    out = []
    for shard in plan_shards(files, rows_per_shard):
        out += list(read_rows(Path(shard.path), shard.start, shard.stop, columns, shard.offset))
    return out


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("rows_per_shard", [1, 3, 7, 100])
def test_every_row_once_in_order_whatever_the_shard_size(tmp_path, fmt, rows_per_shard):
    texts = sentences(7) + ["ünïcödé , \"quoted\" , commas"]
    if fmt != "txt":
        texts.append("a text over\ntwo lines")
    path = write_corpus(tmp_path, texts, fmt)
    rows = _all_rows([path], rows_per_shard)
    assert [r.text for r in rows] == texts
    assert [r.id for r in rows] == [f"{path.name}:{i + 1}" for i in range(len(texts))]


def test_folder_and_glob_give_files_in_a_stable_order(tmp_path):
    b = write_corpus(tmp_path / "d", ["x"], "txt", "b")
    a = write_corpus(tmp_path / "d" / "sub", ["y"], "csv", "a")
    (tmp_path / "d" / "notes.md").write_text("ignored")
    assert find_inputs([tmp_path / "d"]) == [b.resolve(), a.resolve()]
    assert find_inputs([str(tmp_path / "d" / "*.txt"), b]) == [b.resolve()]
    with pytest.raises(FileNotFoundError):
        find_inputs([tmp_path / "missing.txt"])
    with pytest.raises(ValueError, match="no file matches"):
        find_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(ValueError, match="unsupported format"):
        find_inputs([tmp_path / "d" / "notes.md"])


def test_bad_rows_have_reasons_and_keep_their_place(tmp_path):
    lines = [{"text": "fine ."}, {"text": ""}, {"text": None}, {"text": 5}, {"other": 1}, {"text": ["a"]},
             {"text": "   "}, {"id": "k", "text": "kept id ."}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n\n[1, 2]\n", encoding="utf-8")
    rows = _all_rows([path], 4)
    assert [r.reason for r in rows] == [
        None, None, "null text", "text is not a string (int)", "no 'text' field",
        "text is not a string (list)", None, None, "invalid JSON: Expecting value", "empty line",
        "JSON line is not an object (list)",
    ]
    # an empty or blank text is a text (docs/guides/input-rules.md); a blank JSONL line is no record
    assert (rows[1].text, rows[6].text) == ("", "   ")
    assert rows[7].id == "k" and rows[7].text == "kept id ."
    assert all(r.text is None for r in rows if r.reason)
    txt = tmp_path / "t.txt"
    txt.write_bytes(b"one\r\n\n\xff\xfe bad\nlast")
    assert [(r.text, r.reason) for r in _all_rows([txt], 2)] == [
        ("one", None), ("", None), (None, "line is not valid UTF-8"), ("last", None)]


def test_columns_and_ids_from_tables(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"doc": ["a .", None, "c ."], "key": [10, 11, None]}), path)
    rows = _all_rows([path], 2, Columns(text="doc", id="key"))
    assert [(r.id, r.text, r.reason) for r in rows] == [
        ("10", "a .", None), ("11", None, "null text"), ("p.parquet:3", None, "null id in column 'key'")]
    check_columns(path, Columns(text="doc"))
    with pytest.raises(ValueError, match="no text column 'text'"):
        check_columns(path, Columns())
    with pytest.raises(ValueError, match="no id column 'nope'"):
        check_columns(path, Columns(text="doc", id="nope"))
    csv = tmp_path / "n.csv"
    csv.write_text("text,id\n007,1\n,2\n")  # a number-like text stays text; an empty field is an empty text
    assert [(r.id, r.text, r.reason) for r in _all_rows([csv], 5)] == [("1", "007", None), ("2", "", None)]


def test_resume_refused_with_other_settings(tmp_path):
    settings_file = tmp_path / "run.json"
    assert check_resume(settings_file, {"a": 1}) is False
    settings_file.write_text(json.dumps({"a": 1, "encoder": {"seed": 0}}))
    assert check_resume(settings_file, {"a": 1, "encoder": {"seed": 0}}) is True
    with pytest.raises(ValueError, match=r"encoder\.seed differ"):
        check_resume(settings_file, {"a": 1, "encoder": {"seed": 1}})
