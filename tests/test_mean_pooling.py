"""pooling: mean — the mean of the sentence tokens' states — against a direct re-implementation,
and composed with TP, CP, layer lists, the prefix cache and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_vectors_close, make_model, make_tokenizer

from tpembed.encoder import Encoder
from tpembed.models import prepare_model
from tpembed.prompts import normalize_sentence, render

SENTENCES = ["a man is playing a guitar .", "a woman is slicing an onion .", "the cat sat on the mat .",
             "stocks fell sharply on tuesday after the report .", "x"]


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def loaded(request):
    return prepare_model(make_model(request.param), make_tokenizer(), {"name": request.param})


def _direct(loaded, sentence: str, layer: int) -> np.ndarray:
    """The definition: one prompt alone, full forward, mean of hidden_states[layer] over the tokens
    whose characters lie inside the sentence."""
    template = 'This sentence : {placeholder}"{sentence}" means in one word:"'
    prompt = render(template, normalize_sentence(sentence), use_placeholder=False)
    enc = loaded.tokenizer(prompt.text, return_offsets_mapping=True, return_tensors="pt")
    inside = [i for i, (a, b) in enumerate(enc["offset_mapping"][0].tolist())
              if b > a and a < prompt.sentence_end and b > prompt.sentence_start]
    with torch.no_grad():
        out = loaded.model(input_ids=enc["input_ids"], output_hidden_states=True)
    return out.hidden_states[layer][0, inside].mean(dim=0).numpy()


def test_mean_pooling_is_the_mean_of_the_sentence_tokens(loaded):
    encoder = Encoder(loaded, use_which_plan="vanilla", pooling="mean", output_layer=3, prefix_cache=False)
    expected = np.stack([_direct(loaded, s, 3) for s in SENTENCES])
    assert_vectors_close(encoder.encode(SENTENCES), expected, rel=1e-5)
    last = Encoder(loaded, use_which_plan="vanilla", output_layer=3).encode(SENTENCES)
    assert not np.allclose(encoder.encode(SENTENCES), last)  # it is not the last token's state


@pytest.mark.parametrize("settings", [
    dict(use_which_plan="vanilla"),
    dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3),
    dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, cp_layer=1, cp_alpha=0.5),
])
def test_batches_and_the_prefix_cache_change_nothing(loaded, settings):
    encoder = Encoder(loaded, pooling="mean", output_layer=[2, 4], batch_size=3, **settings)
    together = encoder.encode(SENTENCES)
    one_by_one = np.stack([encoder.encode(s) for s in SENTENCES])
    assert_vectors_close(together, one_by_one)
    no_cache = Encoder(loaded, pooling="mean", output_layer=[2, 4], prefix_cache=False, **settings)
    assert_vectors_close(together, no_cache.encode(SENTENCES))


def test_composes_with_tp_cp_and_layer_lists(loaded):
    def mean(**settings):
        return Encoder(loaded, pooling="mean", **settings).encode(SENTENCES)

    vanilla = mean(use_which_plan="vanilla", output_layer=4)
    tp = mean(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3, output_layer=4)
    assert not np.allclose(tp, vanilla, atol=1e-5)  # TP's summary reaches the sentence tokens
    # CP edits the last token only, which is not a sentence token: it cannot change a mean (and says so)
    with pytest.warns(UserWarning, match="Contrastive Prompting"):
        cp = mean(use_which_plan="vanilla", cp_layer=1, output_layer=4)
    assert_vectors_close(cp, vanilla, rel=1e-6)
    layers = mean(use_which_plan="vanilla", output_layer=[2, 4])
    assert_vectors_close(layers, (mean(use_which_plan="vanilla", output_layer=2) + vanilla) / 2, rel=1e-6)


def test_a_sentence_with_special_text_and_a_truncated_one_keep_their_tokens(loaded):
    encoder = Encoder(loaded, use_which_plan="vanilla", pooling="mean", output_layer=3, max_length=18)
    long = "the cat sat on the mat and looked at the dog for a very long time ."
    with pytest.warns(UserWarning, match="truncated"):
        vectors = encoder.encode(["he typed <s> here .", long])
    assert np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])
