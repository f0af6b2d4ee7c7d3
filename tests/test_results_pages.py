"""The Results pages (docs/results/*.md, README's headline block) are what their JSON files give.

No model is loaded and no chart is drawn: the check renders the pages in memory and compares them
with the files on disk (``python benchmarks/results_pages.py --check``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "results_pages.py"


def _module():
    spec = importlib.util.spec_from_file_location("results_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_pages_match_their_json():
    errors = _module().check(ROOT)
    assert not errors, "run `python benchmarks/results_pages.py`:\n" + "\n".join(errors)


def _copy(tmp_path: Path) -> Path:
    """The inputs and outputs of the script in a scratch tree."""
    for rel in ("benchmarks/results_templates", "docs/results", "docs/compare", "docs/sweeps", "docs/search"):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_the_check_fails_on_an_edited_json(tmp_path, capsys):
    module = _module()
    root = _copy(tmp_path)
    assert module.main(["--check", "--root", str(root)]) == 0
    path = root / "docs/results/data/performance.json"
    data = json.loads(path.read_text())
    row = data["tables"]["precision_sts"]["rows"][1]
    assert row[1] == 60.43  # smollm2-135m-tp in bf16, STS12
    row[1] = 61.43
    path.write_text(json.dumps(data))
    assert module.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "docs/results/performance.md: line" in err and "61.43" in err and "60.43" in err


def test_the_check_fails_on_an_edited_raw_result(tmp_path, capsys):
    """A table read from a raw result file (peers.py --out) follows that file."""
    module = _module()
    root = _copy(tmp_path)
    path = root / "docs/results/data/raw/peers-formats.json"
    data = json.loads(path.read_text())
    data["engines"]["llama.cpp bf16"]["sentences_per_s"] *= 2
    path.write_text(json.dumps(data))
    assert module.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "docs/results/performance.md: line" in err and "llama.cpp, BF16" in err


def test_the_check_fails_on_an_edited_headline(tmp_path, capsys):
    module = _module()
    root = _copy(tmp_path)
    path = root / "docs/results/data/headline.json"
    data = json.loads(path.read_text())
    data["models"][0]["rows"][1]["sts_avg"]["estimate"] = 67.95
    path.write_text(json.dumps(data))
    assert module.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "docs/results/index.md: line" in err
    readme_has_block = module.README_START in (root / "README.md").read_text()
    assert ("README.md: line" in err) == readme_has_block


def test_readme_without_markers_is_left_alone(tmp_path):
    module = _module()
    root = _copy(tmp_path)
    (root / "README.md").write_text("# tpembed\n\nno headline markers here\n")
    assert module.main(["--root", str(root), "--no-charts"]) == 0
    assert (root / "README.md").read_text() == "# tpembed\n\nno headline markers here\n"
    assert module.main(["--check", "--root", str(root)]) == 0


def test_a_headline_ci_must_equal_its_compare_json(tmp_path, capsys):
    module = _module()
    root = _copy(tmp_path)
    path = root / "docs/results/data/headline.json"
    data = json.loads(path.read_text())
    best = next(r for r in data["models"][0]["rows"] if r["config"] == "smollm2-135m-best")
    best["sts_avg"]["low"] = 75.01
    path.write_text(json.dumps(data))
    module.main(["--root", str(root), "--no-charts"])  # pages regenerated from the edited JSON
    assert module.main(["--check", "--root", str(root)]) == 1
    assert "compare.json gives 75.18" in capsys.readouterr().err


def test_fill_ci_copies_a_compare_average_into_the_headline(tmp_path):
    module = _module()
    root = _copy(tmp_path)
    path = root / "docs/results/data/headline.json"
    data = json.loads(path.read_text())
    best = next(r for r in data["models"][0]["rows"] if r["config"] == "smollm2-135m-best")
    best["sts_avg"].update(low=None, high=None)
    best["sources"].pop("ci_from")
    path.write_text(json.dumps(data))
    compare = root / "docs/compare/issue26-smollm2-best-vs-minilm/compare.json"
    assert module.main(["--root", str(root), "--no-charts", "--fill-ci", str(compare)]) == 0
    best = next(r for r in json.loads(path.read_text())["models"][0]["rows"] if r["config"] == "smollm2-135m-best")
    assert best["sts_avg"] == {"estimate": 75.96, "low": 75.18, "high": 76.68}
    assert best["sources"]["ci_from"]["system"] == "smollm2-135m-best"
    assert module.main(["--check", "--root", str(root)]) == 0
