"""Two `tpembed eval` processes on one embedding-cache namespace at once (the library-level race is
tested in-process elsewhere): both finish with the same scores, the cache holds each sentence once,
and a third run is served from it without encoding anything."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import DATA_DIR

REPO = Path(__file__).resolve().parents[1]


def without_timings(value):
    """A result's details minus the wall times (which differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith("seconds")}
    return value


def eval_command(model: Path, output: Path) -> list[str]:
    return [sys.executable, "-c", "from tpembed.cli import app; app()", "eval", "--model", str(model),
            "--use-which-plan", "vanilla", "--mode", "dev", "--task-set", "stsb", "--limit", "40", "-o", str(output)]


def test_two_eval_processes_on_one_cache_get_the_same_scores_and_a_third_is_served_from_it(tmp_path, tiny_folder):
    cache = tmp_path / "cache"
    env = {**os.environ, "TPEMBED_CACHE": str(cache), "TPEMBED_DATA": str(DATA_DIR),
           "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("TPEMBED_DATA_URL", None)
    procs = [subprocess.Popen(eval_command(tiny_folder, tmp_path / f"run{i}.json"), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (1, 2)]  # together
    runs = [(p, *p.communicate(timeout=300)) for p in procs]
    for proc, stdout, stderr in runs:
        assert proc.returncode == 0, stderr[-3000:]
        assert "STS-B-dev" in stdout
    tables = [stdout.split("distinct sentences")[0] for _, stdout, _ in runs]
    assert tables[0] == tables[1]  # the printed scores
    results = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in (1, 2)]
    assert results[0]["scores"] == results[1]["scores"]
    assert without_timings(results[0]["details"]) == without_timings(results[1]["details"])  # every pair's cosine

    # one namespace, each distinct sentence once, and every row readable
    (namespace,) = (cache / "embeddings").iterdir()
    with sqlite3.connect(namespace / "embeddings.sqlite") as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM vectors").fetchone()
    assert rows == results[0]["meta"]["n_unique_sentences"] > 0

    third = subprocess.run(eval_command(tiny_folder, tmp_path / "run3.json"), env=env, text=True,
                           capture_output=True, timeout=300, check=False)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "encoding" not in third.stderr, "the third run encoded sentences: the cache did not serve them"
    assert any("encoding" in stderr for _, _, stderr in runs)  # the progress bar shows when something is encoded
    assert json.loads((tmp_path / "run3.json").read_text())["scores"] == results[0]["scores"]
    assert third.stdout.split("distinct sentences")[0] == tables[0]
