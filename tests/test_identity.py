"""The identity (tpembed.identity) covers every setting that changes a vector, and nothing else.

It keys the embedding cache, corpus resume, MTEB results, saved sentence-transformers models and
/v1/models: a vector-changing setting missing from it would make the cache serve stale vectors.
Every field of EncoderConfig is walked: another valid value either changes the identity, or the
field is declared free and the vectors stay the same. A new field with no entry below fails.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import assert_vectors_close, make_model, make_tokenizer
from tpembed import Encoder, load_model
from tpembed.config import EncoderConfig, free_settings, vector_settings
from tpembed.identity import encoder_identity, planned_identity

SENTENCES = ["a man is playing a guitar .", "what is the capital of france ?", "x", "two children run ."]

# Another valid value for every field (a tuple: the first that differs from the base's). The first
# base has TP and CP on, so their settings matter; the second has them off.
ALTERNATIVES = {
    "model": "other-tiny",  # replaced by a second random model's folder
    "prompt_method": "cot",
    "template": 'Sum up {placeholder}"{sentence}" in one word:"',
    "use_which_plan": ("vanilla", "tp"),  # the first that differs from the base's
    "tp_starting_index": 0,
    "tp_exiting_index": 3,
    "output_layer": [3, 4],
    "pst_init": "zeros",
    "seed": 5,
    "device": "cpu",
    "dtype": "bfloat16",
    "max_length": 40,
    "batch_size": 1,
    "max_batch_tokens": 40,
    "prefix_cache": False,
    "demonstration": "storm",
    "demo_ensemble": ["storm", ["jockey", "chef"]],
    "embed_filter": 1.5,
    "pooling": "attention_sum",
    "cp_layer": 1,
    "cp_alpha": 0.5,
    "cp_mode": "nr",
}
BASES = {
    "tp+cp": dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, cp_layer=2, cp_alpha=0.25),
    "vanilla": dict(use_which_plan="vanilla", tp_starting_index=1, tp_exiting_index=2),
}


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("other-tiny")
    make_model("llama", seed=1).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def _changed(base: EncoderConfig, field: str, other_model: str) -> EncoderConfig:
    options = ALTERNATIVES[field] if isinstance(ALTERNATIVES[field], tuple) else (ALTERNATIVES[field],)
    if field == "model":
        options = (other_model,)
    value = next(v for v in options if v != getattr(base, field))
    return EncoderConfig(**{**base.model_dump(), field: value})


def _encode(config: EncoderConfig) -> tuple[dict | None, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd-but-legal settings (an output read before CP's layer)
        encoder = Encoder(config=config)
        return encoder.identity, encoder.encode(SENTENCES)


def test_every_field_is_declared_and_has_an_alternative_here():
    fields = set(EncoderConfig.model_fields)
    assert set(vector_settings()) | set(free_settings()) == fields
    missing = fields - set(ALTERNATIVES)
    assert not missing, f"new EncoderConfig fields {missing}: add another valid value to ALTERNATIVES"


@pytest.mark.parametrize("base_name", sorted(BASES))
@pytest.mark.parametrize("field", sorted(EncoderConfig.model_fields))
def test_a_field_changes_the_identity_or_leaves_the_vectors_alone(field, base_name, tiny_folder, other_tiny):
    base = EncoderConfig(model=str(tiny_folder), **BASES[base_name])
    changed = _changed(base, field, str(other_tiny))
    assert getattr(changed, field) != getattr(base, field)
    base_key, base_vectors = _encode(base)
    key, vectors = _encode(changed)
    if field in free_settings():
        assert key == base_key, f"{field} is declared free but changes the identity"
    if key == base_key:  # the cache would hand out base's vectors for this config: they must be these
        assert_vectors_close(vectors, base_vectors, rel=1e-4)
    elif field in free_settings():
        pytest.fail(f"{field} is free but changed the identity")


@pytest.mark.parametrize("field", sorted(vector_settings()))
def test_every_vector_setting_reaches_the_identity(field, tiny_folder, other_tiny):
    base = EncoderConfig(model=str(tiny_folder), **BASES["tp+cp"])
    changed = _changed(base, field, str(other_tiny))
    base_key, _ = _encode(base)
    key, vectors = _encode(changed)
    assert key != base_key, f"{field} changes vectors but not the identity"


def test_identity_before_loading_equals_the_loaded_one(tiny_folder):
    config = EncoderConfig(model=str(tiny_folder), **BASES["tp+cp"], output_layer=[-2, -1])
    assert planned_identity(config) == Encoder(config=config).identity


def test_an_in_memory_model_has_no_identity():
    encoder = Encoder(make_model("llama"), tokenizer=make_tokenizer(), use_which_plan="vanilla")
    assert encoder.identity is None and encoder_identity(encoder) is None


@pytest.mark.packaged
@pytest.mark.parametrize("name", ["smollm2-135m-best", "gemma3-270m-best"])
def test_identity_before_loading_equals_the_loaded_one_for_packaged_models(name):
    from tpembed.config import resolve_config

    config = resolve_config(name, {"device": "cpu"}).encoder_config()
    loaded = load_model(config.model, device="cpu")
    assert planned_identity(config) == Encoder(loaded, config=config).identity
