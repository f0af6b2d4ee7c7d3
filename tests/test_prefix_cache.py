"""Shared-prefix KV cache and token-budget batching: same embeddings, less work, budgets kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import _COMMON, make_model, make_tokenizer
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, Gemma3TextConfig

from tpembed import Encoder
from tpembed.config import EncoderConfig, default_config_path, load_config_file, resolve_run_config
from tpembed.inputs import PromptTokens, collate, plan_batches
from tpembed.levers.prefix_cache import shared_prefix_length, template_prefix_ids
from tpembed.prompts import normalize_sentence

# very different lengths in one batch, a sentence opening with a quote (merges with the
# template's '"' in byte-level BPE) and one with a literal special token
SENTENCES = [
    "a man is playing a guitar .",
    "the cat sat on the mat and looked at the dog while two children ran through a field of flowers "
    "and the stocks fell sharply on tuesday after the report .",
    "hi",
    "'quoted' words open this one .",
    "he typed <PST> here .",
    "what is the capital of france ?",
]
FAMILIES = ["llama", "qwen2", "gemma2", "gemma3", "mistral"]
METHODS = ["prompteol", "metaeol", "cot", "ke"]
LAYERS = [0, 1, 2, -1]  # embeddings, early exits and the final normed output


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Equal to 1e-4, or to 2e-6 of the largest state magnitude when that is larger.

    Unnormalised middle-layer states of real models reach ~500 in a few dimensions; fp32 rounding
    there is ~1e-4 even between two batchings of the *same* path (batch vs one-by-one), so an
    absolute 1e-4 alone would test float noise. Tiny models and normed outputs get plain 1e-4.
    """
    tol = max(1e-4, 2e-6 * float(np.abs(want).max()))
    diff = float(np.abs(got - want).max())
    assert diff <= tol, f"{what}: max abs difference {diff:.3g} > {tol:.3g}"


def _layer0_tokens(enc: Encoder, fn) -> tuple[object, list[tuple[int, int]]]:
    """Run fn, recording (rows, width) of every input of decoder layer 0."""
    seen: list[tuple[int, int]] = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen.append((hidden.shape[0], hidden.shape[1]))

    handle = enc.loaded.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        return fn(), seen
    finally:
        handle.remove()


@pytest.mark.parametrize("plan", ["vanilla", "tp"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_cache_gives_the_same_embeddings(family, method, plan):
    model, tok = make_model(family), make_tokenizer()
    settings = dict(prompt_method=method, use_which_plan=plan, tp_starting_index=1, tp_exiting_index=3)
    off = Encoder(model, tokenizer=tok, prefix_cache=False, **settings)
    on = Encoder(off.loaded, prefix_cache=True, **settings)
    want, work_off = _layer0_tokens(off, lambda: off.encode_layers(SENTENCES, LAYERS, batch_size=4))
    got, work_on = _layer0_tokens(on, lambda: on.encode_layers(SENTENCES, LAYERS, batch_size=4))
    for k in LAYERS:
        assert_same(got[k], want[k], f"output layer {k}")
    # the cache was really used: fewer token positions went through the layers
    assert sum(r * w for r, w in work_on) < sum(r * w for r, w in work_off)


@pytest.mark.parametrize("plan", ["vanilla", "tp"])
def test_single_output_layer_and_one_sentence(plan):
    model, tok = make_model("llama"), make_tokenizer()
    for layer in (1, 3, -1):
        settings = dict(use_which_plan=plan, tp_exiting_index=2, output_layer=layer, prompt_method="ke")
        off = Encoder(model, tokenizer=tok, prefix_cache=False, **settings)
        on = Encoder(off.loaded, **settings)
        np.testing.assert_allclose(on.encode(SENTENCES), off.encode(SENTENCES), rtol=0, atol=1e-4)
        np.testing.assert_allclose(on.encode(SENTENCES[1]), off.encode(SENTENCES[1]), rtol=0, atol=1e-4)


def test_prefix_is_an_exact_common_prefix_stopping_before_pst():
    candidate = [1, 10, 11, 12, 13]
    rows = [PromptTokens((1, 10, 11, 12, 13, 20, 21), None), PromptTokens((1, 10, 11, 99, 20), None)]
    assert shared_prefix_length(candidate, rows) == 3  # row 2 merged across the boundary
    assert shared_prefix_length(candidate, rows[:1]) == 5
    # at least one token stays in the suffix
    assert shared_prefix_length(candidate, [PromptTokens((1, 10, 11), None)]) == 2
    # never past <PST>: TP rewrites that position per row
    assert shared_prefix_length(candidate, [PromptTokens((1, 10, 7, 11, 12, 13), 2)]) == 2
    assert shared_prefix_length(candidate, [PromptTokens((1, 10, 11, 12, 13, 7, 5), 4)]) == 4
    assert shared_prefix_length(candidate, [PromptTokens((2, 10, 11), None)]) == 0
    assert shared_prefix_length([], rows) == 0


def test_prefix_candidate_is_the_text_before_pst_or_sentence():
    model, tok = make_model("llama"), make_tokenizer()
    tp = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_exiting_index=2)
    template = tp.prompt.templates[0]
    ids = template_prefix_ids(tok, template, use_placeholder=True)
    assert ids == tok("This sentence : ")["input_ids"] and ids[0] == tok.bos_token_id
    row = tp._tokenize(template, ["a cat ."])[0]
    assert shared_prefix_length(ids, [row]) == len(ids) == row.pst_index
    vanilla_ids = template_prefix_ids(tok, template, use_placeholder=False)
    assert vanilla_ids == tok('This sentence : "')["input_ids"]


def test_collate_with_prefix_continues_positions_and_moves_pst():
    prompts = [PromptTokens((1, 5, 6, 9, 7, 8), 3), PromptTokens((1, 5, 6, 9, 7), 3)]
    full = collate(prompts, 0)
    part = collate(prompts, 0, prefix_len=3)
    assert part.input_ids.tolist() == [[9, 7, 8], [0, 9, 7]]
    assert part.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]]
    # positions continue after the prefix and count real tokens (the pad slot's value is unused)
    assert part.position_ids.tolist() == [[3, 4, 5], [2, 3, 4]]
    assert part.pst_index.tolist() == [0, 1]
    # the suffix ids and positions are the tail of the whole-prompt batch
    for row in range(2):
        real = full.attention_mask[row].bool()
        assert full.input_ids[row, real][3:].tolist() == part.input_ids[row, -real.sum() + 3 :].tolist()
        assert full.position_ids[row, real][3:].tolist() == part.position_ids[row, -real.sum() + 3 :].tolist()
    with pytest.raises(ValueError, match="at least one token"):
        collate(prompts, 0, prefix_len=5)
    with pytest.raises(ValueError, match="<PST>"):
        collate(prompts, 0, prefix_len=4)


def test_sliding_window_shorter_than_the_batch_falls_back_to_whole_prompts():
    # windows of 12 slots: some batches fit (cache used), long ones do not (whole prompts, exact)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Gemma3TextConfig(**_COMMON, head_dim=8, sliding_window=12)).eval()
    tok = make_tokenizer()
    for method in ("prompteol", "ke"):
        settings = dict(use_which_plan="tp", tp_exiting_index=2, prompt_method=method)
        off = Encoder(model, tokenizer=tok, prefix_cache=False, **settings)
        on = Encoder(off.loaded, **settings)
        sentences = ["hi", "a b", "a man is playing a guitar .", SENTENCES[1]]
        np.testing.assert_allclose(on.encode(sentences, batch_size=1), off.encode(sentences, batch_size=1), atol=1e-4)
        np.testing.assert_allclose(on.encode(sentences), off.encode(sentences), atol=1e-4)


def test_lm_head_and_later_layers_never_run_with_the_prefix_cache():
    model, tok = make_model("qwen2"), make_tokenizer()
    calls: list[int] = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))

    def no_lm_head(module, args):
        raise AssertionError("the lm_head must never run")

    model.lm_head.register_forward_pre_hook(no_lm_head)
    enc = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_exiting_index=2, output_layer=2, prompt_method="metaeol")
    calls.clear()
    enc.encode(SENTENCES, batch_size=4)
    assert sorted(set(calls)) == [0, 1]
    enc = Encoder(enc.loaded, use_which_plan="tp", tp_exiting_index=2, output_layer=-1, prompt_method="ke")
    enc.encode(SENTENCES)  # the full depth still never touches the lm_head


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_batch_caches_keep_only_the_prefix(monkeypatch, family):
    """A batch's cache hands each layer prefix + suffix but keeps none of the suffix keys/values:
    keeping them would hold every layer's states of the whole batch until the forward ends."""
    from tpembed.levers import prefix_cache

    made: list[tuple[object, int, int]] = []
    original = prefix_cache.batch_cache

    def recording(prefix, batch_size):
        cache = original(prefix, batch_size)
        made.append((cache, prefix.length, batch_size))
        return cache

    monkeypatch.setattr(prefix_cache, "batch_cache", recording)
    enc = Encoder(make_model(family), tokenizer=make_tokenizer(), use_which_plan="tp", tp_exiting_index=2,
                  output_layer=-1, prompt_method="ke")
    with_cache = enc.encode(SENTENCES, batch_size=3)
    assert made, "no batch used the prefix cache"
    for cache, length, rows in made:
        assert len(cache.layers) == enc.loaded.num_layers
        for layer in cache.layers:
            assert layer.get_seq_length() == length  # nothing appended by the forward
            assert layer.keys.shape[0] == rows and layer.keys.stride(0) == 0  # one shared copy of the prefix
    without = Encoder(enc.loaded, use_which_plan="tp", tp_exiting_index=2, output_layer=-1, prompt_method="ke",
                      prefix_cache=False).encode(SENTENCES, batch_size=3)
    assert_same(with_cache, without, family)


# ---- prefix states kept across calls ------------------------------------------------------------


def _count_prefix_runs(monkeypatch) -> list[tuple[tuple[int, ...], int]]:
    """Record (ids, depth) of every prefix forward from now on."""
    from tpembed.levers import prefix_cache

    runs: list[tuple[tuple[int, ...], int]] = []
    original = prefix_cache.compute_prefix

    def counting(model, layers, ids, depth):
        runs.append((tuple(ids), depth))
        return original(model, layers, ids, depth)

    monkeypatch.setattr(prefix_cache, "compute_prefix", counting)
    return runs


KEPT_SETTINGS = {
    "vanilla": dict(use_which_plan="vanilla", prompt_method="prompteol", demonstration=["storm", "chef"]),
    # TP writes its <PST> row into the embedding matrix before every batch; CP adds a pass of its own
    "tp+cp": dict(use_which_plan="tp", tp_exiting_index=2, prompt_method="prompteol", demo_ensemble=["storm", "chef"],
                  cp_layer=1, cp_alpha=0.5),
}


@pytest.mark.parametrize("name", sorted(KEPT_SETTINGS))
def test_prefix_states_are_kept_across_calls(monkeypatch, name):
    settings = KEPT_SETTINGS[name]
    enc = Encoder(make_model("llama"), tokenizer=make_tokenizer(), **settings)
    runs = _count_prefix_runs(monkeypatch)
    first = enc.encode(SENTENCES, batch_size=4)
    assert runs, "no prefix was computed"
    first_runs = list(runs)
    second = enc.encode(SENTENCES[::-1], batch_size=3)[::-1]
    assert runs == first_runs, "the second call computed its prefixes again"
    off = Encoder(enc.loaded, prefix_cache=False, **settings).encode(SENTENCES, batch_size=4)
    assert_same(first, off, name)
    assert_same(second, off, name)


@pytest.mark.parametrize("change", ["a decoder weight", "a decoder weight's .data", "a prefix token's embedding"])
def test_kept_prefix_states_follow_in_place_weight_changes(monkeypatch, change):
    """A weight written in place between calls (an optimizer step, load_state_dict, a LoRA merge
    through ``.data``, which bumps no version counter) retires the kept states: the next call equals
    a fresh encoder on the changed model."""
    from tpembed.levers.prefix_cache import PrefixCache

    settings = dict(use_which_plan="tp", tp_exiting_index=2, prompt_method="ke")
    enc = Encoder(make_model("llama"), tokenizer=make_tokenizer(), **settings)
    before = enc.encode(SENTENCES)
    (lever,) = [lever for lever in enc.levers if isinstance(lever, PrefixCache)]
    (ids, _), = lever.states
    runs = _count_prefix_runs(monkeypatch)
    with torch.no_grad():
        if change == "a decoder weight":
            next(enc.loaded.layers[0].parameters()).mul_(1.5)
        elif change == "a decoder weight's .data":
            next(enc.loaded.layers[0].parameters()).data.mul_(1.5)
        else:
            enc.loaded.model.get_input_embeddings().weight[ids[-1]] += 0.5
    after = enc.encode(SENTENCES)
    assert runs, "the prefix was not computed again"
    assert not np.allclose(after, before, atol=1e-3), "the change did not reach the vectors"
    assert_same(after, Encoder(enc.loaded, prefix_cache=False, **settings).encode(SENTENCES), change)


def test_weights_without_a_version_counter_are_never_kept(monkeypatch):
    with torch.inference_mode():  # inference tensors keep no version counter
        model = make_model("llama")
    enc = Encoder(model, tokenizer=make_tokenizer(), use_which_plan="vanilla", prompt_method="ke")
    runs = _count_prefix_runs(monkeypatch)
    first = enc.encode(SENTENCES)
    assert len(runs) == 1
    assert_same(enc.encode(SENTENCES), first)
    assert len(runs) == 2


# ---- max_batch_tokens --------------------------------------------------------------------------


def test_plan_batches_respects_rows_and_token_budget():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(3, 60, size=200)] + [500]
    for batch_size, budget in [(16, None), (16, 120), (8, 400), (64, 1), (3, 10_000)]:
        batches = plan_batches(lengths, batch_size, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)  # length-sorted, longest first
        for b in batches:
            assert len(b) <= batch_size
            if budget is not None and len(b) > 1:
                assert len(b) * max(lengths[i] for i in b) <= budget
        if budget is None:
            assert all(len(b) == batch_size for b in batches[:-1])
    assert plan_batches([500, 4], 16, 100) == [[0], [1]]  # an over-long row forms its own batch
    with pytest.raises(ValueError, match="max_batch_tokens"):
        plan_batches([3], 4, 0)


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_max_batch_tokens_gives_the_same_embeddings_within_budget(prefix_cache):
    model, tok = make_model("gemma2"), make_tokenizer()
    settings = dict(use_which_plan="tp", tp_exiting_index=2, prompt_method="cot", prefix_cache=prefix_cache)
    fixed = Encoder(model, tokenizer=tok, **settings)
    want = fixed.encode(SENTENCES * 2 + ["x y z"], batch_size=16)
    budget = 130  # prompts are 37..73 tokens: batches of 1 to 3 rows
    capped = Encoder(fixed.loaded, max_batch_tokens=budget, **settings)
    got, seen = _layer0_tokens(capped, lambda: capped.encode(SENTENCES * 2 + ["x y z"], batch_size=16))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    batches = [(r, w) for r, w in seen if r > 1 or not prefix_cache]  # (the prefix forward is 1 row)
    assert len(batches) > 1
    # with the cache a batch runs only its suffixes: still within budget, counted on whole prompts
    assert all(r * w <= budget or r == 1 for r, w in batches)


def test_new_settings_validate_and_load_from_yaml_and_cli():
    assert EncoderConfig().prefix_cache is True and EncoderConfig().max_batch_tokens is None
    assert EncoderConfig(max_batch_tokens=512).max_batch_tokens == 512
    for bad in (0, -5):
        with pytest.raises(ValidationError, match="max_batch_tokens"):
            EncoderConfig(max_batch_tokens=bad)
    path = default_config_path()
    assert load_config_file(path).models  # the shipped YAML still validates
    name = next(iter(load_config_file(path).models))
    run = resolve_run_config(path, name, {"max_batch_tokens": 2048, "prefix_cache": False})
    assert run.max_batch_tokens == 2048 and run.prefix_cache is False
    from typer.testing import CliRunner

    from tpembed.cli import app

    help_text = CliRunner().invoke(app, ["encode", "--help"], env={"COLUMNS": "200"}).output
    assert "--max-batch-tokens" in help_text and "--prefix-cache" in help_text


# ---- the packaged real model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    from tpembed import load_model

    return load_model("smollm2-135m", device="cpu")


REAL_SENTENCES = [
    "A man is playing a guitar.",
    "'Quoted' text starts here.",  # merges with the template's quote: the prefix shrinks by a token
    "Stocks fell sharply on Tuesday after the central bank unexpectedly raised interest rates by "
    "half a point, its largest increase in two decades.",
    "Hi",
]


@pytest.mark.packaged
@pytest.mark.parametrize("plan", ["vanilla", "tp"])
@pytest.mark.parametrize("method", METHODS)
def test_prefix_cache_on_smollm2(smollm2, method, plan):
    settings = dict(prompt_method=method, use_which_plan=plan, tp_starting_index=1, tp_exiting_index=4)
    off = Encoder(smollm2, prefix_cache=False, **settings)
    on = Encoder(smollm2, prefix_cache=True, **settings)
    layers = [3, 28, -1]
    want = off.encode_layers(REAL_SENTENCES, layers)
    got, work = _layer0_tokens(on, lambda: on.encode_layers(REAL_SENTENCES, layers))
    for k in layers:
        assert_same(got[k], want[k], f"output layer {k}")
    template = on.prompt.templates[0]
    rows = on._tokenize(template, [normalize_sentence(s) for s in REAL_SENTENCES])
    length = shared_prefix_length(template_prefix_ids(smollm2.tokenizer, template, plan == "tp"), rows)
    assert length >= 3 and (1, length) in work  # the prefix ran once, as one row
