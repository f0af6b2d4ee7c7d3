"""Invariants of the method on tiny random models of several families (no files needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, make_tokenizer

from tpembed import Encoder
from tpembed.inputs import PromptTokenizer, collate
from tpembed.prompts import PROMPTS, normalize_sentence, render

SENTENCES = [
    "a man is playing a guitar .",
    "the cat sat on the mat and looked at the dog while two children ran .",
    "hi",
    "what is the capital of france ?",
]


def reference_state(model, tokenizer, text: str, index: int) -> torch.Tensor:
    """hidden_states[index][:, -1] of the full causal LM on one unpadded prompt (the paper's way)."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[index][0, -1]


def make_encoder(family: str, **settings) -> tuple[Encoder, torch.nn.Module]:
    model = make_model(family)
    settings.setdefault("tp_exiting_index", 2)  # the default 7 is beyond these 4-layer models
    return Encoder(model, tokenizer=make_tokenizer(), **settings), model


@pytest.mark.parametrize("output_layer", [0, 1, 3, -2, -1])
def test_early_exit_equals_full_run_hidden_state(family, output_layer):
    enc, model = make_encoder(family, use_which_plan="vanilla", output_layer=output_layer)
    got = enc.encode(SENTENCES)
    for row, sentence in enumerate(SENTENCES):
        text = render(PROMPTS["prompteol"].templates[0], normalize_sentence(sentence), use_placeholder=False).text
        ref = reference_state(model, enc.loaded.tokenizer, text, output_layer)
        torch.testing.assert_close(torch.from_numpy(got[row]), ref, rtol=1e-4, atol=1e-5)


def test_tp_with_empty_range_is_vanilla_forward_of_pst_prompt(family):
    enc, model = make_encoder(family, use_which_plan="tp", tp_starting_index=2, tp_exiting_index=2, output_layer=-1)
    got = enc.encode(SENTENCES)
    for row, sentence in enumerate(SENTENCES):
        text = render(PROMPTS["prompteol"].templates[0], normalize_sentence(sentence), use_placeholder=True).text
        assert "<PST>" in text
        ref = reference_state(model, enc.loaded.tokenizer, text, -1)
        torch.testing.assert_close(torch.from_numpy(got[row]), ref, rtol=1e-4, atol=1e-5)


def _record_layers(layers):
    """Post-hooks see the arguments a layer actually ran with (after any pre-hook edits)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, kwargs, output):
        hidden_in = args[0] if args else kwargs["hidden_states"]
        hidden_out = output[0] if isinstance(output, tuple) else output
        seen.append((hidden_in.detach().clone(), hidden_out.detach().clone()))

    return seen, [layer.register_forward_hook(hook, with_kwargs=True) for layer in layers]


def test_tp_copies_last_token_into_pst_and_leaves_earlier_tokens_alone(family):
    start, exit_ = 1, 3
    # whole-prompt forwards (no prefix cache), so recorded layer inputs line up with the batch
    enc, _ = make_encoder(family, use_which_plan="tp", tp_starting_index=start, tp_exiting_index=exit_, prefix_cache=False)
    layers = enc.loaded.layers
    prompts = [p for p in enc._tokenize(enc.prompt.templates[0], [normalize_sentence(s) for s in SENTENCES])]
    batch = collate(prompts, 0)  # the encoder sorts by length; recompute its batch order
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].ids))
    pst = torch.tensor([batch.pst_index[i] for i in order])

    seen_tp, handles = _record_layers(layers)
    enc.encode(SENTENCES, batch_size=len(SENTENCES))
    for h in handles:
        h.remove()
    off, _ = make_encoder(family, use_which_plan="tp", tp_starting_index=0, tp_exiting_index=0, prefix_cache=False)
    seen_off, handles = _record_layers(off.loaded.layers)
    off.encode(SENTENCES, batch_size=len(SENTENCES))
    for h in handles:
        h.remove()

    rows = torch.arange(len(SENTENCES))
    first_real = torch.tensor([int(batch.attention_mask[i].argmax()) for i in order])
    for i in range(len(layers)):
        hidden_in, _ = seen_tp[i]
        if start <= i < exit_:
            previous_out = seen_tp[i - 1][1]
            torch.testing.assert_close(hidden_in[rows, pst], previous_out[:, -1], rtol=0, atol=0)
        for b in range(len(SENTENCES)):
            # real tokens before <PST> never see TP: identical to the no-TP run. (Padding is left
            # out: a fully masked pad row may attend anywhere, and no real token attends to it.)
            before = slice(first_real[b], pst[b])
            torch.testing.assert_close(hidden_in[b, before], seen_off[i][0][b, before], rtol=0, atol=0)
    # and TP does change the tokens after <PST> once it has run
    assert not torch.allclose(seen_tp[exit_][0][0, pst[0] + 1 :], seen_off[exit_][0][0, pst[0] + 1 :])


@pytest.mark.parametrize("plan", ["vanilla", "tp"])
def test_batch_invariance(family, plan):
    enc, _ = make_encoder(family, use_which_plan=plan, tp_starting_index=1, tp_exiting_index=3, output_layer=-2)
    together = enc.encode(SENTENCES, batch_size=len(SENTENCES))
    for row, sentence in enumerate(SENTENCES):
        alone = enc.encode(sentence)
        np.testing.assert_allclose(together[row], alone, rtol=1e-4, atol=1e-5)


def test_pst_found_exactly_once_per_row_whatever_the_padding():
    tok = make_tokenizer()
    enc, _ = make_encoder("llama", use_which_plan="tp")
    pst_id = enc._pst_token_id
    prompts = enc._tokenize(enc.prompt.templates[0], [normalize_sentence(s) for s in SENTENCES + ["<PST> in text"]])
    batch = collate(prompts, tok.pad_token_id)
    for row in range(batch.input_ids.shape[0]):
        assert (batch.input_ids[row] == pst_id).sum() == 1
        assert batch.input_ids[row, batch.pst_index[row]] == pst_id
        # positions restart at 0 at the first real token, whatever the left padding
        first = int(batch.attention_mask[row].argmax())
        assert batch.position_ids[row, first] == 0


def test_literal_pst_in_a_sentence_stays_text():
    enc, _ = make_encoder("llama", use_which_plan="tp")
    tok = enc.loaded.tokenizer
    with_literal = enc._tokenize(enc.prompt.templates[0], ["he typed <PST> here."])[0]
    assert with_literal.ids.count(enc._pst_token_id) == 1  # only the real placeholder
    # the literal is tokenized as plain text would be
    literal = tok(" <PST>", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    after = list(with_literal.ids[with_literal.pst_index + 1 :])
    assert enc._pst_token_id not in literal and len(literal) > 1
    assert any(after[i : i + len(literal)] == literal for i in range(len(after)))
    assert np.isfinite(enc.encode("he typed <PST> here.")).all()


def test_metaeol_is_the_mean_of_its_eight_prompts():
    model, tok = make_model("qwen2"), make_tokenizer()
    enc = Encoder(model, tokenizer=tok, prompt_method="metaeol", use_which_plan="tp", tp_exiting_index=2)
    got = enc.encode(SENTENCES[:2])
    singles = [
        Encoder(enc.loaded, template=t, use_which_plan="tp", tp_exiting_index=2).encode(SENTENCES[:2])
        for t in PROMPTS["metaeol"].templates
    ]
    assert len(singles) == 8
    np.testing.assert_allclose(got, np.mean(singles, axis=0), rtol=1e-4, atol=1e-5)


def test_hooks_are_removed_after_encode_and_after_an_exception():
    enc, _ = make_encoder("gemma2", use_which_plan="tp", tp_starting_index=0, tp_exiting_index=4, output_layer=2)
    layers = enc.loaded.layers
    enc.encode(SENTENCES)
    assert all(len(layer._forward_pre_hooks) == 0 for layer in layers)

    def boom(module, args, output):
        raise RuntimeError("boom")

    handle = layers[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        enc.encode(SENTENCES)
    handle.remove()
    assert all(len(layer._forward_pre_hooks) == 0 and len(layer._forward_hooks) == 0 for layer in layers)


def test_layers_after_the_output_layer_and_lm_head_never_run():
    model, tok = make_model("llama"), make_tokenizer()
    calls: list[int] = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))

    def no_lm_head(module, args):
        raise AssertionError("the lm_head must never run")

    model.lm_head.register_forward_pre_hook(no_lm_head)
    norm_calls: list[int] = []
    model.model.norm.register_forward_hook(lambda m, a, o: norm_calls.append(1))
    encoder = Encoder(model, tokenizer=tok, use_which_plan="vanilla", output_layer=2)
    calls.clear()  # loading runs one tiny full forward (the causality check)
    norm_calls.clear()
    encoder.encode(SENTENCES, batch_size=4)
    assert sorted(set(calls)) == [0, 1] and not norm_calls
    encoder = Encoder(model, tokenizer=tok, use_which_plan="vanilla", output_layer=-1)
    calls.clear()
    encoder.encode(SENTENCES, batch_size=4)
    assert sorted(set(calls)) == [0, 1, 2, 3] and norm_calls


def test_encode_layers_matches_separate_runs():
    model, tok = make_model("mistral"), make_tokenizer()
    enc = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_exiting_index=2)
    many = enc.encode_layers(SENTENCES, [1, 3, -1])
    for k in (1, 3, -1):
        one = Encoder(enc.loaded, use_which_plan="tp", tp_exiting_index=2, output_layer=k).encode(SENTENCES)
        np.testing.assert_allclose(many[k], one, rtol=1e-5, atol=1e-6)


def test_gaussian_pst_embedding_is_seeded():
    a, _ = make_encoder("llama", use_which_plan="tp", seed=3)
    b, _ = make_encoder("llama", use_which_plan="tp", seed=3)
    c, _ = make_encoder("llama", use_which_plan="tp", seed=4)
    z, _ = make_encoder("llama", use_which_plan="tp", pst_init="zeros")
    row = lambda e: e.loaded.model.get_input_embeddings().weight[e._pst_token_id]  # noqa: E731
    assert torch.equal(row(a), row(b)) and not torch.equal(row(a), row(c))
    assert torch.count_nonzero(row(z)) == 0


def test_encoders_sharing_a_model_keep_their_own_pst_embedding():
    a, _ = make_encoder("llama", use_which_plan="tp", tp_starting_index=0, tp_exiting_index=0, seed=1)
    before = a.encode(SENTENCES)
    Encoder(a.loaded, use_which_plan="tp", tp_exiting_index=2, seed=2).encode(SENTENCES)  # overwrites the shared row
    np.testing.assert_array_equal(a.encode(SENTENCES), before)


def test_sentence_transformers_conventions():
    enc, _ = make_encoder("qwen2", use_which_plan="tp", tp_exiting_index=2)
    one = enc.encode("a man is playing a guitar .")
    assert one.ndim == 1 and one.shape == (enc.embedding_dim,) and one.dtype == np.float32
    many = enc.encode(SENTENCES)
    assert many.shape == (len(SENTENCES), enc.embedding_dim)
    normed = enc.encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-5)
    tensor = enc.encode(SENTENCES, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor)
    # order is restored after length sorting, duplicates encoded once but returned for each input
    shuffled = [SENTENCES[2], SENTENCES[0], SENTENCES[2]]
    np.testing.assert_allclose(enc.encode(shuffled), many[[2, 0, 2]], rtol=1e-4, atol=1e-5)
    sim = enc.similarity(many, many)
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-5)
    assert sim.shape == (len(SENTENCES), len(SENTENCES))


def test_truncation_shortens_the_sentence_never_the_prompt():
    enc, _ = make_encoder("llama", use_which_plan="tp", max_length=24)
    tok = enc.loaded.tokenizer
    long_sentence = "the cat sat on the mat and looked at the dog . " * 10
    with pytest.warns(UserWarning, match="truncated"):
        prompt = enc._tokenize(enc.prompt.templates[0], [normalize_sentence(long_sentence)])[0]
    assert len(prompt.ids) <= 24
    assert prompt.ids.count(enc._pst_token_id) == 1
    full_tail = tok(render(enc.prompt.templates[0], "x", use_placeholder=True).text)["input_ids"][-6:]
    assert list(prompt.ids[-6:]) == full_tail  # '" means in one word:"' survives
    assert prompt.ids[0] == tok.bos_token_id
    with pytest.raises(ValueError, match="too small"):
        PromptTokenizer(tok, enc._pst_token_id, 5)(enc.prompt.templates[0], ["a b c"])


@pytest.mark.parametrize("plan", ["vanilla", "tp"])
def test_bad_and_odd_inputs(plan):
    enc, _ = make_encoder("gemma3", use_which_plan=plan, tp_exiting_index=2)
    assert enc.encode([]).shape == (0, enc.embedding_dim)
    assert np.isfinite(enc.encode("")).all()
    assert np.isfinite(enc.encode('he said "hello" to me')).all()
    # quotes become apostrophes, as in the paper, so both spellings give one embedding
    np.testing.assert_array_equal(enc.encode('he said "hi".'), enc.encode("he said 'hi'."))
    with pytest.warns(UserWarning, match="truncated"):
        huge = enc.encode("word " * 4000)  # 20,000 characters, longer than the model's 1024 positions
    assert np.isfinite(huge).all()
    for bad in ([1, 2], ["ok", None], [b"bytes"]):
        with pytest.raises(ValueError, match="str"):
            enc.encode(bad)
    with pytest.raises(ValueError):
        enc.encode(42)


def test_settings_errors_are_clear():
    model, tok = make_model("llama"), make_tokenizer()
    with pytest.raises(ValueError, match="output_layer=9 is out of range"):
        Encoder(model, tokenizer=tok, use_which_plan="vanilla", output_layer=9)
    with pytest.raises(ValueError, match="tp_exiting_index=7 is beyond"):
        Encoder(model, tokenizer=tok, use_which_plan="tp", tp_exiting_index=7)
    with pytest.raises(ValueError, match="must be >= tp_starting_index"):
        Encoder(model, tokenizer=tok, use_which_plan="tp", tp_starting_index=3, tp_exiting_index=2)
    with pytest.raises(ValueError, match="prompt_method"):
        Encoder(model, tokenizer=tok, use_which_plan="vanilla", prompt_method="nope")
    with pytest.raises(ValueError, match="placeholder"):
        Encoder(model, tokenizer=tok, use_which_plan="tp", tp_exiting_index=2, template='say "{sentence}"')
    with pytest.raises(ValueError, match="tokenizer"):
        Encoder(model)
    # vanilla ignores the TP range, like the paper's configs (0, 0)
    Encoder(model, tokenizer=tok, use_which_plan="vanilla", tp_starting_index=0, tp_exiting_index=0)
