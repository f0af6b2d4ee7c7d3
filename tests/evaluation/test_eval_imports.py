"""The evaluation subpackage and the cache must not need torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# tpembed/__init__.py belongs to the encoder (it may import torch); bypass it with an
# empty package object so this checks only what evaluation/ and cache.py import.
CODE = f"""
import sys, types
pkg = types.ModuleType("tpembed")
pkg.__path__ = [{str(SRC / "tpembed")!r}]
sys.modules["tpembed"] = pkg
import tpembed.evaluation, tpembed.embedding_cache
for name in tpembed.evaluation.__all__:  # the package imports lazily: touch every public name
    getattr(tpembed.evaluation, name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(",".join(bad))
"""


def test_no_torch_import():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
