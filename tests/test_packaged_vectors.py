"""Every packaged named config gives the vectors it gave before the redesign (issue 25).

The reference is computed by the code itself as it was before the levers became plug-ins: the
source of REFERENCE_COMMIT is taken from git history (``git archive``) and run in a subprocess by
tests/reference/make_packaged_vectors.py, so no array is kept in the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tpembed import Encoder, load_model

from reference.sentences import (REFERENCE_COMMIT, REFERENCE_THREADS, packaged_configs, packaged_settings,
                                 reference_sentences)

pytestmark = pytest.mark.packaged

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def old_src(tmp_path_factory) -> Path:
    """The source before the redesign (a missing commit is an error, not a skip: clone with history)."""
    folder = tmp_path_factory.mktemp("reference")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", REFERENCE_COMMIT, "src"], capture_output=True)
    assert archive.returncode == 0, f"git archive {REFERENCE_COMMIT} failed: {archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


@pytest.fixture(scope="module")
def reference(old_src):
    """The old code's vectors of the current packaged configs' settings."""
    out, settings = old_src.parent / "vectors.npz", old_src.parent / "settings.json"
    settings.write_text(json.dumps(packaged_settings()))
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "reference" / "make_packaged_vectors.py"), str(old_src), str(out),
         str(settings)],
        check=True, capture_output=True,
    )
    return np.load(out)


# settings whose embedding-cache namespace must stay what the old code wrote (every lever on and off)
NAMESPACE_SETTINGS = [
    dict(use_which_plan="vanilla"),
    dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3, output_layer=[2, 3, 4]),
    dict(use_which_plan="tp", tp_starting_index=0, tp_exiting_index=2, prefix_cache=False, pst_init="zeros", seed=3),
    dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, cp_layer=2, cp_alpha=0.25, cp_mode="nr"),
    dict(use_which_plan="vanilla", pooling="attention_sum", output_layer=[3, 4], max_length=20),
    dict(use_which_plan="tp", prompt_method=["prompteol", "cot"], demonstration="storm", tp_exiting_index=2),
    dict(use_which_plan="vanilla", prompt_method="metaeol", output_layer=3),
    dict(use_which_plan="tp", template='Sum {placeholder}"{sentence}" up:"'),
]
_NAMESPACES = """
import json, sys, warnings
warnings.simplefilter("ignore")
from tpembed import Encoder, load_model
try:
    from tpembed.identity import cache_namespace
except ImportError:
    from tpembed.run import cache_namespace
loaded = load_model("smollm2-135m", device="cpu")
print(json.dumps([cache_namespace(Encoder(loaded, **s)) for s in json.loads(sys.argv[1])]))
"""


def test_cache_namespaces_are_the_old_code_s(old_src):
    def namespaces(src: Path) -> list[str]:
        run = subprocess.run([sys.executable, "-c", _NAMESPACES, json.dumps(NAMESPACE_SETTINGS)], check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
        return json.loads(run.stdout.strip().splitlines()[-1])

    assert namespaces(REPO / "src") == namespaces(old_src)


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


# levers added after the reference commit: a config using one has no old vectors to match
NEWER_SETTINGS = ("demo_ensemble", "embed_filter", "demonstration")


def test_the_reference_covers_every_packaged_named_config(reference):
    refused = {line.split(":", 1)[0]: line for line in reference["refused"]}
    for name in packaged_configs():
        if name in refused:  # the old code refused it: only for a setting it did not have
            assert any(field in refused[name] for field in NEWER_SETTINGS), refused[name]
        else:
            assert name in reference.files, f"{name}: no reference vectors"
    assert len(refused) < len(packaged_configs())
    assert list(reference["sentences"]) == reference_sentences()


@pytest.mark.parametrize("name", sorted(packaged_configs()))
def test_vectors_are_unchanged(name, reference, models):
    if name not in reference.files:
        pytest.skip(f"{name} uses a lever added after the reference commit (see the coverage test)")
    config = packaged_configs()[name]
    if config.model not in models:
        models[config.model] = load_model(config.model, device="cpu", dtype="float32")
    vectors = Encoder(models[config.model], config=config).encode(reference_sentences(), show_progress_bar=False)
    expected = reference[name]
    error = np.linalg.norm(vectors - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert error.max() <= 1e-6, f"{name}: row {error.argmax()} differs by {error.max():.2e} (relative)"
