"""Tables and JSON result files."""

from __future__ import annotations

import json

import pytest

from tpembed.evaluation import format_table, library_versions, to_markdown, write_json

SCORES = {"SICKRelatedness": 70.0, "STS12": 60.123, "STS13": 80.0, "STSBenchmark": 75.5,
          "STS14": 70.0, "STS15": 78.0, "STS16": 77.0, "STSAvg": 72.946,
          "MR": 80.0, "TREC": 90.0}


def _row(table: str, i: int) -> list[str]:
    return [c.strip() for c in table.splitlines()[i].strip("|").split("|")]


def test_sts_table_in_paper_order():
    table = format_table(SCORES, "sts")
    assert _row(table, 1) == ["STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R",
                              "Avg."]
    assert _row(table, 3) == ["60.12", "80.00", "70.00", "78.00", "77.00", "75.50", "70.00",
                              "72.95"]


def test_transfer_table_avg_computed_when_missing():
    table = format_table({"TREC": 90.0, "MR": 80.0}, "transfer")
    assert _row(table, 1) == ["MR", "TREC", "Avg."]
    assert _row(table, 3) == ["80.00", "90.00", "85.00"]
    with pytest.raises(ValueError, match="no transfer scores"):
        format_table({"STS12": 1.0}, "transfer")


def test_markdown_has_both_tables():
    md = to_markdown(SCORES)
    assert md.count("| STS12 |") == 1 and "| MR | TREC | Avg. |" in md
    assert "| 60.12 |" in md


def test_write_json(tmp_path):
    path = tmp_path / "sub" / "res.json"
    details = {"STS12": {"spearman": {"all": float("nan")}, "n": 3}}
    write_json(path, SCORES, details, {"model": "x"}, {"versions": library_versions(),
                                                       "seed": 0})
    doc = json.loads(path.read_text())
    assert set(doc) == {"scores", "details", "config", "versions", "seed"}
    assert doc["scores"]["STS12"] == 60.123
    assert doc["details"]["STS12"]["spearman"]["all"] is None  # NaN -> null (strict JSON)
    with pytest.raises(ValueError, match="override"):
        write_json(path, SCORES, {}, {}, {"scores": 1})


def test_library_versions():
    v = library_versions()
    assert {"python", "numpy", "scipy", "scikit-learn"} <= set(v)
