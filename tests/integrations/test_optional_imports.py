"""``import tpembed`` imports neither sentence-transformers nor MTEB; a missing one names its extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import sys
import tpembed
import tpembed.cli
assert "sentence_transformers" not in sys.modules and "mteb" not in sys.modules, "imported eagerly"
sys.modules["sentence_transformers"] = None  # as if not installed
sys.modules["mteb"] = None
for build, extra in ((tpembed.to_sentence_transformer, "tpembed[st]"), (tpembed.mteb_model, "tpembed[mteb]")):
    try:
        build()
    except ImportError as err:
        assert extra in str(err), err
    else:
        raise AssertionError(f"{build.__name__} ran without its library")
from typer.testing import CliRunner
result = CliRunner().invoke(tpembed.cli.app, ["mteb", "--tasks", "STSBenchmark"])
assert result.exit_code == 2 and "tpembed[mteb]" in result.output, result.output
assert "torch" not in sys.modules, "a missing extra should fail before torch loads"
print("ok")
"""


def test_optional_libraries_are_imported_lazily_and_missing_ones_name_the_extra():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
