"""``tpembed embed``: one-line errors before any model loads; a run, a resumed rerun, a refused one."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from tpembed.cli import app

from .conftest import sentences, write_corpus


TINY = ("--tp-exiting-index", "3")  # the tiny model has 4 decoder layers


def invoke(*args: str):
    result = CliRunner().invoke(app, ["embed", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.output


def test_errors_before_any_work(tmp_path, tiny_folder):
    path = write_corpus(tmp_path, ["a ."], "csv")
    out = tmp_path / "out"
    one_line_error(invoke(tmp_path / "nope.txt", "-o", out, "--model", tiny_folder, *TINY), "does not exist")
    one_line_error(invoke(path, "-o", out, "--model", tiny_folder, "--text-column", "body", *TINY), "no text column 'body'")
    one_line_error(invoke(path, "-o", path, "--model", tiny_folder, *TINY), "is a file; give a folder")
    one_line_error(invoke(path, "-o", out, "--engine", "spark", *TINY), "--engine must be local or ray")
    one_line_error(invoke(path, "-o", out, "--name", "no-such-config"), "not found")
    one_line_error(invoke(path, "-o", out, "--tp-exiting-index", "99", "--model", tiny_folder), "tp_exiting_index=99")
    assert not (out / "embeddings").exists(), "nothing is written before the checks pass"


def test_run_then_resume_then_refuse(tmp_path, tiny_folder):
    folder = tmp_path / "in"
    write_corpus(folder, sentences(5), "txt")
    pq.write_table(pa.table({"body": ["x .", None], "key": ["k1", "k2"]}), folder / "t.parquet")
    out = tmp_path / "out"
    args = (folder, "-o", out, "--model", tiny_folder, *TINY, "--text-column", "body", "--id-column", "key",
            "--rows-per-shard", "2", "--quiet")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "embedded 6 of 7 rows in 4 shards (0 from an earlier run)" in first.output
    assert "rejected 1 rows" in first.output
    assert json.loads((out / "rejects.jsonl").read_text()) == {
        "id": "k2", "reason": "null text", "source": str((folder / "t.parquet").resolve()), "row": 2}
    again = invoke(*args, "--batch-size", "1")  # a setting that changes no vector
    assert again.exit_code == 0 and "(4 from an earlier run)" in again.output, again.output
    one_line_error(invoke(*args, "--output-layer", "2"), "output_layer differ")
