"""tpembed inside sentence-transformers: same vectors as the Encoder, prompts as templates, save/load."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from tpembed import Encoder, load_model, to_sentence_transformer
from tpembed.identity import encoder_identity

from .conftest import TINY_SETTINGS

SENTENCES = [
    "A man is playing a guitar.",
    "hi",
    "The stock market fell sharply on Tuesday after the quarterly report came out.",
    "What is the capital of France?",
    'She said "yes" and left',
]
QUERY_TEMPLATE = 'This query : {placeholder}"{sentence}" means in one word:"'


def assert_close(got, want) -> None:
    """Equal within 1e-4 relative to the vectors' scale (batching changes only padding)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    st = to_sentence_transformer(model=tiny_model_dir, **TINY_SETTINGS)
    reference = Encoder(model=tiny_model_dir, **TINY_SETTINGS)  # loads its own copy of the weights
    return st, reference


def test_encode_equals_the_encoder_with_sentence_transformers_conventions(tiny):
    st, reference = tiny
    want = reference.encode(SENTENCES)
    assert_close(st.encode(SENTENCES, batch_size=2), want)  # ST's length-sorted batches of 2
    single = st.encode(SENTENCES[2])
    assert single.shape == (reference.embedding_dim,)
    assert_close(single, want[2])
    tensor = st.encode(SENTENCES, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert_close(tensor.cpu().numpy(), want)
    unit = st.encode(SENTENCES, normalize_embeddings=True)
    assert_close(unit, want / np.linalg.norm(want, axis=1, keepdims=True))
    assert st.similarity_fn_name == "cosine"
    assert_close(st.similarity(unit, unit).numpy(), reference.similarity(want, want))
    assert st.get_embedding_dimension() == reference.embedding_dim
    assert st.encode([]).shape == (0,)
    clone = pickle.loads(pickle.dumps(st))  # multi-process encode ships the model to workers
    assert_close(clone.encode(SENTENCES), want)


def test_an_empty_text_gets_the_encoders_vector(tiny):
    """docs/guides/input-rules.md: "" is a text, the same vector as Encoder.encode("")."""
    st, reference = tiny
    assert_close(st.encode(["", SENTENCES[0]]), reference.encode(["", SENTENCES[0]]))
    assert_close(st.encode(""), reference.encode(""))


def test_a_prompt_is_a_template_for_that_call_never_a_prefix(tiny, tiny_model_dir):
    st, reference = tiny
    want = Encoder(model=tiny_model_dir, template=QUERY_TEMPLATE, **TINY_SETTINGS).encode(SENTENCES)
    assert np.abs(want - reference.encode(SENTENCES)).max() > 1e-2  # the template matters
    assert_close(st.encode(SENTENCES, prompt=QUERY_TEMPLATE), want)
    st.prompts = {"query": QUERY_TEMPLATE, "document": ""}
    try:
        assert_close(st.encode(SENTENCES, prompt_name="query"), want)
        assert_close(st.encode_query(SENTENCES), want)
        assert_close(st.encode_document(SENTENCES), reference.encode(SENTENCES))  # "": the config's prompt
    finally:
        st.prompts = {}
    with pytest.raises(ValueError, match=r"\{sentence\}"):
        st.encode(SENTENCES, prompt="query: ")
    with pytest.raises(ValueError, match=r"\{placeholder\}"):  # TP needs the <PST> slot
        st.encode(SENTENCES, prompt='This query : "{sentence}" means in one word:"')


def test_only_text_is_accepted(tiny):
    st, _ = tiny
    with pytest.raises(ValueError):
        st.encode([("a pair", "of texts")])
    with pytest.raises(ValueError, match="text only"):
        st[0].preprocess(["fine", 3])


def test_max_seq_length_truncates_the_sentence_like_the_encoder(tiny, tiny_model_dir):
    st, reference = tiny
    long = ["word " * 60 + "end"]
    original = st.max_seq_length
    assert original == reference.max_length
    st.max_seq_length = 24
    try:
        with pytest.warns(UserWarning):
            got = st.encode(long)
        with pytest.warns(UserWarning):
            want = Encoder(model=tiny_model_dir, max_length=24, **TINY_SETTINGS).encode(long)
        assert_close(got, want)
    finally:
        st.max_seq_length = original


def test_save_and_load_round_trip(tiny, tiny_model_dir, tmp_path):
    st, reference = tiny
    st.prompts = {"query": QUERY_TEMPLATE}
    try:
        st.save(str(tmp_path))
    finally:
        st.prompts = {}
    files = set(os.listdir(tmp_path))
    assert {"tpembed_config.json", "modules.json", "config_sentence_transformers.json"} <= files
    assert not files & {"config.json", "model.safetensors", "pytorch_model.bin"}  # weights are referenced
    saved = json.loads((tmp_path / "tpembed_config.json").read_text())
    assert saved["settings"]["model"] == tiny_model_dir and saved["settings"]["tp_exiting_index"] == 3

    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(tmp_path))
    loaded = SentenceTransformer(str(tmp_path), trust_remote_code=True)
    assert_close(loaded.encode(SENTENCES), reference.encode(SENTENCES))
    assert loaded.similarity_fn_name == "cosine"
    assert loaded.prompts["query"] == QUERY_TEMPLATE
    assert_close(loaded.encode_query(SENTENCES), st.encode(SENTENCES, prompt=QUERY_TEMPLATE))

    # model_kwargs override saved settings; unknown ones are errors
    layer2 = SentenceTransformer(str(tmp_path), trust_remote_code=True, model_kwargs={"output_layer": 2})
    want = Encoder(model=tiny_model_dir, output_layer=2, **TINY_SETTINGS).encode(SENTENCES)
    assert_close(layer2.encode(SENTENCES), want)
    with pytest.raises(ValueError, match="no_such_setting"):
        SentenceTransformer(str(tmp_path), trust_remote_code=True, model_kwargs={"no_such_setting": 1})


def test_demonstrations_and_embed_filter_travel_with_the_saved_model(tiny_model_dir, tmp_path):
    recipe = {**TINY_SETTINGS, "demo_ensemble": ["storm", ["jockey", "chef"]], "embed_filter": 1.5}
    want = Encoder(model=tiny_model_dir, **recipe).encode(SENTENCES)
    assert np.abs(want - Encoder(model=tiny_model_dir, **TINY_SETTINGS).encode(SENTENCES)).max() > 1e-2
    st = to_sentence_transformer(model=tiny_model_dir, **recipe)
    assert_close(st.encode(SENTENCES, batch_size=2), want)
    st.save(str(tmp_path))
    assert_close(SentenceTransformer(str(tmp_path), trust_remote_code=True).encode(SENTENCES), want)


def test_loading_warns_when_the_weights_changed(tiny, tmp_path):
    st, _ = tiny
    st.save(str(tmp_path))
    config_file = tmp_path / "tpembed_config.json"
    saved = json.loads(config_file.read_text())
    assert saved["identity"] == encoder_identity(st[0].encoder)  # tpembed.identity, not a list of its own
    saved["identity"]["model"] = "sha256:" + "0" * 64
    config_file.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="weights .* changed"):
        SentenceTransformer(str(tmp_path), trust_remote_code=True)
    with pytest.warns(UserWarning, match="weights .* changed"):  # settings changed on purpose: the weights still count
        SentenceTransformer(str(tmp_path), trust_remote_code=True, model_kwargs={"output_layer": 2})
    saved = json.loads(config_file.read_text())
    saved["identity"] = {**encoder_identity(st[0].encoder), "max_length": 7}  # a vector setting that differs
    config_file.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="identity .* changed .*max_length"):
        SentenceTransformer(str(tmp_path), trust_remote_code=True)


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m", device="cpu")


@pytest.mark.packaged
@pytest.mark.parametrize("plan", ["vanilla", "tp"])
def test_packaged_smollm2_through_sentence_transformers_equals_the_encoder(plan, smollm2, tmp_path):
    settings = {"device": "cpu", "use_which_plan": plan, "tp_starting_index": 1, "tp_exiting_index": 2,
                "output_layer": 28}
    st = to_sentence_transformer(model="smollm2-135m", **settings)  # its own copy of the weights
    want = Encoder(smollm2, **settings).encode(SENTENCES)
    assert_close(st.encode(SENTENCES, batch_size=3), want)
    assert_close(st.encode(SENTENCES[0]), want[0])
    assert_close(st.encode(SENTENCES, convert_to_tensor=True).numpy(), want)
    if plan == "vanilla":
        return
    # TP really ran inside the wrapper: the vanilla plan gives other vectors
    vanilla = Encoder(smollm2, **{**settings, "use_which_plan": "vanilla"}).encode(SENTENCES)
    assert np.abs(want - vanilla).max() > 100 * 1e-4 * np.abs(want).max()
    st.save(str(tmp_path))
    saved = json.loads((tmp_path / "tpembed_config.json").read_text())
    assert saved["settings"]["model"] == "smollm2-135m"  # the packaged name, not a copy of the weights
    assert smollm2.identity["sha256"] in saved["identity"]["model"]
    assert_close(SentenceTransformer(str(tmp_path), trust_remote_code=True).encode(SENTENCES), want)
