"""Training-free levers composed with TP: prompt ensembles, output-layer lists, Contrastive Prompting.

Each lever, when off (or reduced to one member / one layer), must give the plain plan exactly;
when on, it must equal a direct re-implementation of its definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model

from tpembed.levers.aggregate import ensemble_mean
from tpembed.config import EncoderConfig
from tpembed.levers.contrastive import AUX_TEMPLATE, contrastive_update, output_projection
from tpembed.encoder import Encoder
from tpembed.models import prepare_model
from tpembed.prompts import normalize_sentence, render

SENTENCES = ["a man is playing a guitar .", "a woman is slicing an onion .", "the cat sat on the mat .",
             "stocks fell sharply on tuesday after the report ."]
TP = dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3)


def _enc(loaded, **settings):
    return Encoder(loaded, batch_size=3, **{**TP, **settings})


def test_config_parses_lists_from_cli_text_and_one_element_lists_are_scalars():
    c = EncoderConfig(prompt_method="cot,ke", output_layer="2,3")
    assert c.prompt_method == ["cot", "ke"] and c.output_layer == [2, 3]
    assert EncoderConfig(prompt_method="cot+ke").prompt_method == ["cot", "ke"]
    assert EncoderConfig(prompt_method=["cot"], output_layer=[3]).model_dump() == EncoderConfig(
        prompt_method="cot", output_layer=3).model_dump()
    with pytest.raises(ValueError):
        EncoderConfig(prompt_method="cot,nope")
    with pytest.raises(ValueError):
        EncoderConfig(prompt_method=["cot", "cot"])
    with pytest.raises(ValueError):
        EncoderConfig(cp_layer=-1)
    # the CLI passes list-valued settings as text ("27,28"), so they must not become int options
    from tpembed.cli._common import _option_type

    fields = EncoderConfig.model_fields
    assert _option_type(fields["output_layer"].annotation) is str and _option_type(fields["cp_layer"].annotation) is int


def test_ensemble_of_one_and_list_of_one_layer_are_the_plain_encoder(llama):
    plain = _enc(llama, prompt_method="cot", output_layer=3).encode(SENTENCES)
    assert np.array_equal(_enc(llama, prompt_method=["cot"], output_layer=[3]).encode(SENTENCES), plain)


def test_ensemble_is_the_mean_of_normalised_members(llama):
    cot = _enc(llama, prompt_method="cot", output_layer=3).encode(SENTENCES)
    ke = _enc(llama, prompt_method="ke", output_layer=3).encode(SENTENCES)
    both = _enc(llama, prompt_method=["cot", "ke"], output_layer=3).encode(SENTENCES)
    expected = (cot / np.linalg.norm(cot, axis=1, keepdims=True) + ke / np.linalg.norm(ke, axis=1, keepdims=True)) / 2
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, cot)
    np.testing.assert_array_equal(ensemble_mean([cot]), cot)


def test_layer_list_is_the_mean_of_the_layers(llama):
    enc = _enc(llama, output_layer=[2, 4])
    by_layer = enc.encode_layers(SENTENCES, [2, 4])
    np.testing.assert_allclose(enc.encode(SENTENCES), (by_layer[2] + by_layer[4]) / 2, rtol=1e-6)
    single = _enc(llama, output_layer=2).encode(SENTENCES)
    np.testing.assert_array_equal(by_layer[2], single)


def test_output_projection_is_found_generically(family, tokenizer_factory):
    model = make_model(family)
    loaded = prepare_model(model, tokenizer_factory(), {"name": family})
    for layer in loaded.layers:
        proj = output_projection(layer, model.config.hidden_size)
        assert proj is layer.self_attn.o_proj  # what each family calls it, found without its name


def _reference_cp(loaded, sentences, layer, alpha, mode, output_layer):
    """Contrastive Prompting written out directly: whole prompts one by one (no batching, no prefix
    cache, no TP), the aux input read with a plain hook, the update applied with another."""
    model, tok = loaded.model, loaded.tokenizer
    proj = loaded.layers[layer].self_attn.o_proj
    template = "This sentence : {placeholder}\"{sentence}\" means in one word:\""
    out = []
    for s in sentences:
        s = normalize_sentence(s)
        ids = lambda t: torch.tensor([tok(render(t, s, use_placeholder=False).text)["input_ids"]])  # noqa: E731
        seen = {}
        h = proj.register_forward_pre_hook(lambda m, a: seen.setdefault("aux", a[0][:, -1].clone()))
        with torch.no_grad():
            model(input_ids=ids(AUX_TEMPLATE))
        h.remove()

        def edit(m, a):
            x = a[0].clone()
            v, b = x[:, -1], seen["aux"]
            d = v - b
            x[:, -1] = alpha * d if mode == "ns" else alpha * d * v.norm(dim=-1, keepdim=True) / (d.norm(dim=-1, keepdim=True) + 1e-7)
            return (x,)

        h = proj.register_forward_pre_hook(edit)
        with torch.no_grad():
            hs = model(input_ids=ids(template), output_hidden_states=True).hidden_states
        h.remove()
        out.append(hs[output_layer][0, -1].numpy())
    return np.stack(out)


@pytest.mark.parametrize("mode", ["ns", "nr"])
def test_cp_equals_a_direct_reimplementation(llama, mode):
    got = Encoder(llama, use_which_plan="vanilla", output_layer=4, cp_layer=1, cp_alpha=0.5, cp_mode=mode,
                  batch_size=3).encode(SENTENCES)
    expected = _reference_cp(llama, SENTENCES, 1, 0.5, mode, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    plain = Encoder(llama, use_which_plan="vanilla", output_layer=4).encode(SENTENCES)
    assert not np.allclose(got, plain, atol=1e-3)


def test_cp_and_attention_sum_hook_an_int8_model(tokenizer_factory):
    """torch.ao's dynamic int8 Linear is no nn.Linear subclass: the levers must still find its o_proj in
    the quantized model itself (hooks on another copy's modules would silently never fire)."""
    import copy
    import warnings

    fp32 = make_model("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
    loaded = prepare_model(int8, tokenizer_factory(), {"name": "tiny-llama-int8"})
    for layer in loaded.layers:
        assert output_projection(layer, int8.config.hidden_size) is layer.self_attn.o_proj
    assert not isinstance(loaded.layers[1].self_attn.o_proj, torch.nn.Linear)
    # int8 activations are scaled per call: one prompt per forward, whole, as the reference runs them
    got = Encoder(loaded, use_which_plan="vanilla", output_layer=4, cp_layer=1, cp_alpha=0.5, cp_mode="ns",
                  batch_size=1, prefix_cache=False).encode(SENTENCES)
    np.testing.assert_allclose(got, _reference_cp(loaded, SENTENCES, 1, 0.5, "ns", 4), rtol=1e-4, atol=1e-5)
    plain = Encoder(loaded, use_which_plan="vanilla", output_layer=4).encode(SENTENCES)
    summed = Encoder(loaded, use_which_plan="vanilla", output_layer=4, pooling="attention_sum").encode(SENTENCES)
    assert not np.allclose(got, plain, atol=1e-3) and not np.allclose(summed, plain, atol=1e-3)


def test_cp_off_is_the_plain_plan_and_layers_before_cp_are_untouched(llama):
    plain = _enc(llama, output_layer=4).encode_layers(SENTENCES, [1, 2, 4])
    assert np.array_equal(_enc(llama, output_layer=4, cp_layer=None, cp_alpha=0.3).encode(SENTENCES), plain[4])
    with pytest.warns(UserWarning, match="before Contrastive"):
        cp = _enc(llama, output_layer=2, cp_layer=2).encode_layers(SENTENCES, [1, 2, 4])
    # hidden_states[k] is the input of layer k: CP at layer 2 changes index 3 onwards only
    np.testing.assert_allclose(cp[1], plain[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cp[2], plain[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(cp[4], plain[4], atol=1e-3)


def test_all_levers_with_tp_batch_equals_one_by_one_and_prefix_cache_changes_nothing(llama):
    settings = dict(prompt_method=["prompteol", "ke"], output_layer=[3, 4], cp_layer=1, cp_alpha=0.7, cp_mode="nr")
    batched = _enc(llama, **settings).encode(SENTENCES)
    one_by_one = np.stack([_enc(llama, **settings).encode(s) for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)
    no_prefix = _enc(llama, prefix_cache=False, **settings).encode(SENTENCES)
    np.testing.assert_allclose(batched, no_prefix, rtol=1e-4, atol=1e-5)
    # TP really composes: turning it off changes the vectors
    vanilla = _enc(llama, **{**settings, "use_which_plan": "vanilla"}).encode(SENTENCES)
    assert not np.allclose(batched, vanilla, atol=1e-3)


def test_cp_layer_beyond_the_model_is_a_clear_error(llama):
    with pytest.raises(ValueError, match="cp_layer=9"):
        _enc(llama, cp_layer=9)


def test_attention_sum_is_the_sum_of_the_last_tokens_attention_outputs(llama):
    enc = _enc(llama, pooling="attention_sum", output_layer=3)
    got = enc.encode_layers(SENTENCES, [3, 4])
    # direct: whole TP prompts one by one, o_proj outputs summed over layers 0..k-1
    plain = _enc(llama, output_layer=4)
    tok, model = llama.tokenizer, llama.model
    template = plain.prompt.templates[0]
    from tpembed.levers.prepend import token_prepending

    expected = {3: [], 4: []}
    for s in SENTENCES:
        ids = plain._tokenize(template, [normalize_sentence(s)])[0]
        outs = []
        handles = [layer.self_attn.o_proj.register_forward_hook(lambda m, a, o: outs.append(o[0, -1]))
                   for layer in llama.layers]
        with torch.no_grad(), token_prepending(llama.layers, torch.tensor([ids.pst_index]), 1, 3):
            model(input_ids=torch.tensor([ids.ids]))
        for h in handles:
            h.remove()
        for k in (3, 4):
            expected[k].append(torch.stack(outs[:k]).sum(0).numpy())
    for k in (3, 4):
        np.testing.assert_allclose(got[k], np.stack(expected[k]), rtol=1e-4, atol=1e-5)
    hidden = plain.encode_layers(SENTENCES, [3])[3]
    assert not np.allclose(got[3], hidden, atol=1e-3)
    # composes with CP and ensembles; batch == one by one
    settings = dict(pooling="attention_sum", prompt_method=["prompteol", "cot"], output_layer=4, cp_layer=1)
    batched = _enc(llama, **settings).encode(SENTENCES)
    one_by_one = np.stack([_enc(llama, **settings).encode(s) for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_demonstration_prefixes_every_template_and_composes_with_tp(llama):
    from tpembed.prompts import DEMONSTRATIONS

    enc = _enc(llama, prompt_method=["prompteol", "cot"], demonstration="chef")
    sentence, word = DEMONSTRATIONS["chef"]
    assert all(t.startswith(f'This sentence : "{sentence}" means in one word:"{word}". ') for t in enc.prompt.templates)
    assert [t.split('". ', 1)[1] for t in enc.prompt.templates] == list(_enc(llama, prompt_method=["prompteol", "cot"]).prompt.templates)
    custom = _enc(llama, demonstration=f"{sentence} => {word}").encode(SENTENCES)
    np.testing.assert_array_equal(custom, _enc(llama, demonstration="chef").encode(SENTENCES))
    assert not np.allclose(custom, _enc(llama).encode(SENTENCES), atol=1e-3)
    batched = enc.encode(SENTENCES)
    np.testing.assert_allclose(batched, np.stack([enc.encode(s) for s in SENTENCES]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="demonstration"):
        EncoderConfig(demonstration="no arrow here")


@pytest.mark.packaged
def test_the_shipped_best_recipe_runs_on_the_packaged_model(tmp_path):
    import json

    from typer.testing import CliRunner

    from tpembed.cli import app
    from tpembed.config import default_config_path, describe_entry, load_config_file
    from conftest import DATA_DIR

    entry = load_config_file(default_config_path()).models["smollm2-135m-best"]
    assert entry.cp_layer is not None and isinstance(entry.output_layer, list)  # the levers are really on
    assert "CP" in describe_entry(entry)["layers"]
    out = tmp_path / "best.json"  # the converted model is shared with the other packaged tests; no vectors cached
    result = CliRunner().invoke(app, ["run", "smollm2-135m-best", "--data", str(DATA_DIR), "--limit", "2",
                                      "--set", "task_set=stsb", "--no-cache", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["config"]["cp_layer"] == entry.cp_layer and doc["config"]["output_layer"] == entry.output_layer


def test_count_tokens_counts_every_prompt_the_encoder_runs(llama):
    """Usage (the server reports it) counts each ensemble member's prompt and CP's auxiliary prompt."""
    tokenizer = llama.tokenizer
    sentences = ["a cat sat", "dogs run in the park"]

    def tokens(template: str, sentence: str) -> int:
        return len(tokenizer(render(template, normalize_sentence(sentence), use_placeholder=False).text)["input_ids"])

    plain = _enc(llama, use_which_plan="vanilla", prompt_method="prompteol")
    both = _enc(llama, use_which_plan="vanilla", prompt_method=["prompteol", "ke"], cp_layer=1)
    aux = [tokens(AUX_TEMPLATE, s) for s in sentences]
    members = [a - b for a, b in zip(both.count_tokens(sentences), aux)]
    assert plain.count_tokens(sentences) == [tokens(plain.prompt.templates[0], s) for s in sentences]
    assert members == [sum(tokens(t, s) for t in both.prompt.templates) for s in sentences]
