"""Model loading: local folders, errors for missing paths and non-decoder models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, make_tokenizer
from transformers import BertConfig, BertModel, T5Config, T5ForConditionalGeneration

from tpembed import Encoder, load_model
from tpembed.models import (
    _base_decoder,
    find_decoder_layers,
    prepare_model,
    resolve_dtype,
)


def test_load_from_a_local_hf_folder_matches_the_in_memory_model(tmp_path):
    model, tok = make_model("qwen2"), make_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.num_layers == 4 and loaded.identity["model_type"] == "qwen2"
    assert not hasattr(loaded.model, "lm_head")  # only the base decoder is kept
    settings = dict(use_which_plan="tp", tp_exiting_index=2)
    from_disk = Encoder(loaded, **settings).encode(["a man is playing a guitar ."])
    in_memory = Encoder(model, tokenizer=make_tokenizer(), **settings).encode(["a man is playing a guitar ."])
    np.testing.assert_allclose(from_disk, in_memory, rtol=1e-5, atol=1e-6)


def test_missing_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere" / "model.gguf")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("./no/such/folder")


def test_a_folder_without_a_model_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="cannot load a model config"):
        load_model(tmp_path)


def test_non_decoder_models_are_rejected():
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32)).eval()
    with pytest.raises(ValueError, match="not a causal decoder"):
        prepare_model(bert, make_tokenizer())
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8))
    with pytest.raises(ValueError, match="encoder-decoder"):
        prepare_model(t5, make_tokenizer())


def test_layers_that_cannot_be_found_give_a_clear_error():
    with pytest.raises(ValueError, match="cannot find the decoder layers"):
        find_decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_layer_list_is_found_for_every_family(family):
    """prepare_model's way down to the decoder, whatever base_model says (transformers 4.56-4.57 give
    Gemma3ForCausalLM the multimodal prefix, so there base_model is the head model itself)."""
    model = make_model(family)
    assert find_decoder_layers(_base_decoder(model)) is model.model.layers


def test_dtype_choice():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))


def test_loading_is_quiet_unless_asked(tiny_folder, capfd):
    """Encoder() / load_model() show no 'Loading weights' bar of transformers' own; progress=True does."""
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    Encoder(model=str(tiny_folder), use_which_plan="vanilla")
    load_model(tiny_folder)
    quiet = capfd.readouterr()
    assert "Loading weights" not in quiet.err + quiet.out
    assert hf_logging.is_progress_bar_enabled()  # the switch is put back
    Encoder(model=str(tiny_folder), use_which_plan="vanilla", progress=True)
    shown = capfd.readouterr().err
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_folder)  # transformers < 5 has no such bar for one file
    if "Loading weights" in capfd.readouterr().err:
        assert "Loading weights" in shown


@pytest.mark.packaged
def test_gguf_header_reader_agrees_with_gguf_py():
    """The header-only reader (used before torch loads) gives what gguf's own GGUFReader gives."""
    from gguf import GGUFReader, GGUFValueType

    from tpembed.model_files import (
        gguf_architecture_value,
        gguf_metadata,
        packaged_model_file,
    )

    path = packaged_model_file("smollm2-135m")
    ours = gguf_metadata(path)
    reader = GGUFReader(path)
    for key, field in reader.fields.items():
        if field.types[0] == GGUFValueType.ARRAY or key.startswith("GGUF."):
            continue
        raw = field.parts[field.data[0]]
        theirs = bytes(raw).decode("utf-8") if field.types[0] == GGUFValueType.STRING else raw[0].item()
        expected = pytest.approx(theirs) if isinstance(theirs, float) else theirs
        assert ours[key] == expected, key
    architecture = ours["general.architecture"]
    assert gguf_architecture_value(ours, "block_count") == int(reader.fields[f"{architecture}.block_count"].parts[-1][0])
