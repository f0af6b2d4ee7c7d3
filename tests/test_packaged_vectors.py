"""Every packaged named config gives the vectors it gave before the redesign (issue 25).

tests/reference/packaged_vectors.npz was written by tests/reference/make_packaged_vectors.py on the
code before the levers became plug-ins; regenerate it only for a deliberate change of the method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tpembed import Encoder, load_model

from reference.sentences import REFERENCE_THREADS, packaged_configs, reference_sentences

pytestmark = pytest.mark.packaged

REFERENCE = Path(__file__).parent / "reference" / "packaged_vectors.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def models():
    return {}


@pytest.fixture(autouse=True)
def reference_threads():
    """The reference's thread count (earlier tests may leave torch with another): same sums, same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(REFERENCE_THREADS)
    yield
    torch.set_num_threads(before)


def test_the_reference_covers_every_packaged_named_config(reference):
    assert set(packaged_configs()) <= set(reference.files), "a new packaged config: regenerate the reference"
    assert list(reference["sentences"]) == reference_sentences()


@pytest.mark.parametrize("name", sorted(packaged_configs()))
def test_vectors_are_unchanged(name, reference, models):
    config = packaged_configs()[name]
    if config.model not in models:
        models[config.model] = load_model(config.model, device="cpu", dtype="float32")
    vectors = Encoder(models[config.model], config=config).encode(reference_sentences(), show_progress_bar=False)
    expected = reference[name]
    error = np.linalg.norm(vectors - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert error.max() <= 1e-6, f"{name}: row {error.argmax()} differs by {error.max():.2e} (relative)"
