"""Every bad input or setting is a clear ValueError (or a warning when legal but almost surely wrong)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import make_model, make_tokenizer

from tpembed import Encoder, load_model
from tpembed.models import resolve_device


@pytest.fixture(scope="module")
def enc() -> Encoder:
    return Encoder(make_model("llama"), tokenizer=make_tokenizer(), use_which_plan="tp", tp_exiting_index=2)


def test_bytes_as_the_whole_input_is_named(enc):
    for data in (b"a man is playing", bytearray(b"x")):
        with pytest.raises(ValueError, match=f"got {type(data).__name__}; decode it first"):
            enc.encode(data)


@pytest.mark.parametrize("unordered", [{"a", "b"}, frozenset({"a"}), {"a": 1, "b": 2}])
def test_unordered_collections_are_refused(enc, unordered):
    with pytest.raises(ValueError, match="no defined order"):
        enc.encode(unordered)


def test_ordered_containers_are_accepted(enc):
    expected = enc.encode(["a cat .", "a dog ."])
    np.testing.assert_array_equal(enc.encode(("a cat .", "a dog .")), expected)
    np.testing.assert_array_equal(enc.encode(np.array(["a cat .", "a dog ."])), expected)
    np.testing.assert_array_equal(enc.encode(s for s in ["a cat .", "a dog ."]), expected)
    with pytest.raises(ValueError, match="1-D"):
        enc.encode(np.array([["a", "b"]]))


def test_lone_surrogate_is_named_with_its_position(enc):
    with pytest.raises(ValueError, match=r"sentence 1 .*lone surrogate '\\udc80' at character 3"):
        enc.encode(["fine", "bad\udc80 text"])


def test_non_text_items_and_non_iterables(enc):
    with pytest.raises(ValueError, match="item 1 is NoneType"):
        enc.encode(["ok", None])
    with pytest.raises(ValueError, match="got int"):
        enc.encode(42)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "8"])
def test_bad_batch_sizes_are_refused_not_replaced_by_the_default(enc, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        enc.encode(["a cat ."], batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        enc.encode_layers(["a cat ."], [-1], batch_size=batch_size)


def test_encode_layers_wants_a_list_of_layers(enc):
    with pytest.raises(ValueError, match="non-empty list"):
        enc.encode_layers(["a cat ."], -1)
    with pytest.raises(ValueError, match="non-empty list"):
        enc.encode_layers(["a cat ."], [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error_before_loading():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model("smollm2-135m", device="cuda:1")  # refused before the model is touched


def test_unknown_devices_are_clear():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_unknown_model_name_fails_within_seconds(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: an unreachable hub
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="not a packaged model .*cannot be reached"):
        load_model("no-such-org/no-such-model", device="cpu")
    with pytest.raises(ValueError, match="not a valid hub id"):
        load_model("not a model name", device="cpu")
    assert time.perf_counter() - start < 10


def test_output_layer_zero_warns_that_every_sentence_gets_one_vector():
    model, tok = make_model("llama"), make_tokenizer()
    with pytest.warns(UserWarning, match="same vector for every sentence"):
        enc = Encoder(model, tokenizer=tok, use_which_plan="vanilla", output_layer=0)
    vectors = enc.encode(["a cat .", "stocks fell sharply ."])
    np.testing.assert_array_equal(vectors[0], vectors[1])  # the warning is true
    with pytest.warns(UserWarning, match="same vector"):
        Encoder(model, tokenizer=tok, use_which_plan="vanilla", output_layer=-5)  # -(L+1) is 0 too


def test_tp_that_cannot_change_the_output_warns():
    model, tok = make_model("llama"), make_tokenizer()
    with pytest.warns(UserWarning, match="empty"):
        Encoder(model, tokenizer=tok, use_which_plan="tp", tp_starting_index=2, tp_exiting_index=2)
    with pytest.warns(UserWarning, match="TP cannot change"):
        enc = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_starting_index=2, tp_exiting_index=4, output_layer=2)
    off = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_starting_index=2, tp_exiting_index=2, output_layer=2)
    np.testing.assert_allclose(enc.encode(["a cat ."]), off.encode(["a cat ."]), rtol=1e-6)  # the warning is true
