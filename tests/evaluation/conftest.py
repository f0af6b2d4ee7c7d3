"""Shared fixtures for the evaluation tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# The repo root's sibling shared/senteval, unless TPEMBED_DATA points elsewhere.
DATA_DIR = Path(os.environ.get("TPEMBED_DATA")
                or Path(__file__).resolve().parents[2].parent / "shared" / "senteval")


@pytest.fixture(scope="session", autouse=True)
def _single_blas_thread():
    # The probes here fit tiny matrices; multi-threaded BLAS only adds overhead and
    # degrades badly when other processes hold the (2) cores.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"SentEval data not found at {DATA_DIR} (set TPEMBED_DATA)")
    return DATA_DIR


def bow_encode(sentences: list[str], dim: int = 512) -> np.ndarray:
    """Deterministic signed bag-of-words hashing encoder (a stand-in for a model)."""
    out = np.zeros((len(sentences), dim), dtype=np.float32)
    for i, s in enumerate(sentences):
        for tok in s.lower().split():
            h = int.from_bytes(hashlib.md5(tok.encode("utf-8")).digest()[:8], "little")
            out[i, h % dim] += 1.0 if (h >> 40) & 1 else -1.0
    return out


class CountingEncoder:
    """Records every call; encodes with :func:`bow_encode`."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, sentences: list[str]) -> np.ndarray:
        self.calls.append(list(sentences))
        return bow_encode(sentences)


@pytest.fixture
def bow():
    return bow_encode


@pytest.fixture
def counting_encoder() -> CountingEncoder:
    return CountingEncoder()
