"""Fixtures for the integration tests: a tiny random Llama saved as an HF folder, offline hub."""

from __future__ import annotations

import pytest
from conftest import make_model, make_tokenizer

# The random model has 4 decoder layers; TP's default exit (7) does not fit.
TINY_SETTINGS = {"device": "cpu", "tp_starting_index": 1, "tp_exiting_index": 3}


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # Everything here must work without the network: any hub request raises instead of waiting.
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-llama")
    make_model("llama").save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return str(path)
