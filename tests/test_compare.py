"""`tpembed compare`: result JSONs of the tiny model compared end to end (table, JSON, PNG), a config
evaluated beside a result file, result files without per-pair values, and one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR
from typer.testing import CliRunner

from tpembed.cli import app

LIMIT = 6
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tiny_folder, tmp_path_factory):
    """Two result JSONs of `tpembed run -o` on the 7 STS tasks (first LIMIT pairs per subset), and one of STS-B only."""
    folder = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv("TPEMBED_CACHE", str(folder / "cache"))
    runner = CliRunner()
    common = ["--model", str(tiny_folder), "--use-which-plan", "vanilla", "--data", str(DATA_DIR),
              "--limit", str(LIMIT), "-q"]
    paths = {}
    for name, extra in (("last", []), ("layer2", ["--output-layer", "2"]), ("stsb", ["--task-set", "stsb"])):
        paths[name] = folder / f"{name}.json"
        res = runner.invoke(app, ["run", *common, *extra, "-o", str(paths[name])])
        assert res.exit_code == 0, res.output
    yield paths
    mp.undo()


def _run(args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_compare_two_result_files(results, tmp_path):
    out = tmp_path / "cmp"
    res = _run([results["last"], results["layer2"], "--out", out, "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert "| Task | last | layer2 | layer2 − last |" in res.output
    for display in ("STS12", "STS16", "STS-B", "SICK-R", "Avg."):
        assert f"| {display} |" in res.output
    assert (out / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "compare.md").read_text().startswith("| Task |")
    doc = json.loads((out / "compare.json").read_text())
    first = json.loads(results["last"].read_text())
    assert doc["n_resamples"] == 200 and doc["baseline"] == "last"
    for row in doc["tasks"]:
        assert row["ci"] is True
        score = row["scores"]["last"]
        assert score["estimate"] == pytest.approx(first["scores"][row["task"]], abs=1e-9)
        assert score["low"] <= score["estimate"] <= score["high"]
        assert row["diffs"]["last"] == {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95}
    assert doc["average"]["scores"]["last"]["estimate"] == pytest.approx(first["scores"]["STSAvg"], abs=1e-9)
    # seeded: the same command gives the same file
    again = _run([results["last"], results["layer2"], "--out", tmp_path / "again", "--resamples", "200"])
    assert again.exit_code == 0
    assert (tmp_path / "again" / "compare.json").read_text() == (out / "compare.json").read_text()


def test_a_config_is_evaluated_beside_a_result_file(results, tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "tiny.yaml"
    config.write_text(f"default_config: tiny-l3\nmodels:\n  tiny-l3:\n    model_name_or_path: {tiny_folder}\n"
                      f"    use_which_plan: vanilla\n    output_layer: 3\n")
    res = _run([config, results["stsb"], "--task-set", "stsb", "--set", "batch_size=4", "--limit", LIMIT,
                "--data", DATA_DIR, "--out", tmp_path / "cmp", "-q", "--resamples", "100"])
    assert res.exit_code == 0, res.output
    assert "| Task | tiny-l3 | stsb | stsb − tiny-l3 |" in res.output
    assert "| STS-B |" in res.output


def test_result_files_without_per_pair_values_get_scores_without_intervals(results, tmp_path):
    doc = json.loads(results["layer2"].read_text())
    for details in doc["details"].values():
        details.pop("pairs", None)  # as written before the pairs were saved
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    res = _run([results["last"], old, "--out", tmp_path / "cmp", "--resamples", "50"])
    assert res.exit_code == 0, res.output
    assert "without per-pair similarities" in res.output
    row = json.loads((tmp_path / "cmp" / "compare.json").read_text())["tasks"][0]
    assert row["ci"] is False and row["scores"]["old"]["low"] is None


def test_clear_errors(results, tmp_path):
    out = ["--out", tmp_path / "cmp"]
    cases = [
        ([results["last"], tmp_path / "missing.json"], "does not exist"),
        ([results["last"], "no-such-config"], "not found in the named configs"),
        ([results["last"], tmp_path / "missing.yaml"], "does not exist"),
        ([results["last"], results["stsb"]], "cover different tasks"),
    ]
    doc = json.loads(results["layer2"].read_text())
    doc["details"]["STS12"]["pairs"]["MSRpar"]["gold"][0] += 1.0  # other pairs (another --limit or data)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    cases.append(([results["last"], other], "different pairs of STS12"))
    (tmp_path / "junk.json").write_text("not json")
    cases.append(([results["last"], tmp_path / "junk.json"], "is not a JSON result file"))
    for args, message in cases:
        res = _run([*args, *out])
        assert res.exit_code == 2, res.output
        assert message in res.output
        assert "Traceback" not in res.output


def test_the_chart_shows_every_whisker():
    """compare.png's score panel reaches above the highest CI end (STS-B's and SICK-R's were cut off)."""
    from tpembed.evaluation.compare import score_limits

    def row(task, estimate, low, high):
        return {"task": task, "scores": {"a": {"estimate": estimate, "low": low, "high": high},
                                         "b": {"estimate": estimate - 1, "low": low - 1, "high": high + 3}}}

    comparison = {"systems": [{"label": "a"}, {"label": "b"}],
                  "tasks": [row("STS12", 60.0, 57.0, 62.0), row("STSBenchmark", 78.0, 76.5, 79.5),
                            row("SICKRelatedness", 80.0, 79.0, 81.0)], "average": None}
    bottom, top = score_limits(comparison)
    ends = [v for r in comparison["tasks"] for s in r["scores"].values() for v in (s["low"], s["high"])]
    assert bottom < min(ends) and top > max(ends) == 84.0
    comparison["tasks"].append(row("STS13", -3.0, -5.0, 1.0))  # a negative score: matplotlib's own range
    assert score_limits(comparison) is None
