"""Demonstrations (one, k-shot, ensembles) and EmbedFilter: each equals its definition, composes with
TP, the prefix cache and batching, and the tuner scores exactly what the Encoder gives.

The built-in demonstrations are checked against every STS and SICK sentence of the SentEval data:
none may be taken from an evaluation set.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, assert_vectors_close, make_model, make_tokenizer
from test_levers import SENTENCES, TP, _enc

from tpembed.config import EncoderConfig, RunConfig
from tpembed.encoder import Encoder
from tpembed.evaluation.pipeline import run_evaluation
from tpembed.levers.aggregate import ensemble_mean
from tpembed.levers.embed_filter import bulk_projection, placeholder_row
from tpembed.models import prepare_model
from tpembed.prompts import DEMONSTRATIONS, demonstration_prefix
from tpembed.tuning import Candidate, DevScorer, dev_pairs, parse_demos, parse_filters
from tpembed.tuning.space import DemoEnsemble

def test_k_shot_puts_every_shot_before_the_prompt_in_order(llama):
    two = _enc(llama, demonstration="storm+chef")
    assert two.config.demonstration == ["storm", "chef"] == EncoderConfig(demonstration=["storm", "chef"]).demonstration
    storm, chef = demonstration_prefix("storm"), demonstration_prefix("chef")
    plain = _enc(llama).prompt.templates[0]
    assert two.prompt.templates == (storm + chef + plain,)
    assert _enc(llama, demonstration="chef+storm").prompt.templates == (chef + storm + plain,)
    assert EncoderConfig(demonstration=["storm"]).demonstration == "storm"  # one shot is the one-shot setting
    vectors = two.encode(SENTENCES)
    assert not np.allclose(vectors, _enc(llama, demonstration="storm").encode(SENTENCES), atol=1e-3)
    # the shots are the shared prefix: cached or not, batched or one by one, the same vectors
    assert_vectors_close(_enc(llama, demonstration="storm+chef", prefix_cache=False).encode(SENTENCES), vectors)
    assert_vectors_close(np.stack([two.encode(s) for s in SENTENCES]), vectors)


def test_a_demonstration_ensemble_is_the_mean_of_its_normalised_members(llama):
    members = ["storm", ["jockey", "chef"]]
    for prompts in (["prompteol"], ["prompteol", "cot"]):
        ensemble = _enc(llama, prompt_method=prompts, demo_ensemble=members, output_layer=[3, 4])
        # the members are prompt-major, as a prompt ensemble's: (prompt, demonstration) pairs
        parts = {k: [_enc(llama, prompt_method=p, demonstration=d, output_layer=k).encode(SENTENCES)
                     for p in prompts for d in members] for k in (3, 4)}
        expected = (ensemble_mean(parts[3]) + ensemble_mean(parts[4])) / 2
        assert_vectors_close(ensemble.encode(SENTENCES), expected)
    off = _enc(llama, demo_ensemble=members, prefix_cache=False).encode(SENTENCES)
    assert_vectors_close(_enc(llama, demo_ensemble=members).encode(SENTENCES), off)
    assert EncoderConfig(demo_ensemble="storm,jockey+chef").demo_ensemble == members


@pytest.mark.parametrize("settings, match", [
    (dict(demo_ensemble="storm"), "at least two members"),
    (dict(demo_ensemble="storm,storm"), "each member once"),
    (dict(demonstration="storm", demo_ensemble="jockey,chef"), "not both"),
    (dict(demonstration="storm+nope"), "built-in names"),
    (dict(demonstration=["storm", 3]), "demonstration"),
    (dict(embed_filter=1.0), "greater than 1"),
])
def test_bad_demonstration_and_filter_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        EncoderConfig(**settings)


def test_no_demonstration_is_taken_from_an_sts_or_sick_sentence():
    def words(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    files = [p for p in DATA_DIR.rglob("*") if p.is_file() and re.search(r"STS|SICK", str(p.relative_to(DATA_DIR)))]
    assert len(files) > 20, f"no STS/SICK files under {DATA_DIR}"
    demos = {words(sentence): name for name, (sentence, _) in DEMONSTRATIONS.items()}
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for field in re.split(r"[\t\n]", text):
            if words(field) in demos:
                found.append((demos[words(field)], path.name))
    assert not found, f"demonstrations found in evaluation data: {found}"


def test_embed_filter_projects_onto_the_middle_of_the_unembedding_spectrum(llama):
    weight = llama.unembedding.detach().double()
    _, _, vh = torch.linalg.svd(weight, full_matrices=False)
    band = vh[(32 - 16) // 2 : (32 - 16) // 2 + 16]  # ratio 2 on hidden 32: the middle 16 directions
    np.testing.assert_allclose(bulk_projection(llama.unembedding, 16), (band.T @ band).numpy(), atol=1e-5)
    plain = _enc(llama, output_layer=[3, 4]).encode(SENTENCES)
    filtered = _enc(llama, output_layer=[3, 4], embed_filter=2).encode(SENTENCES)
    assert_vectors_close(filtered, plain @ (band.T @ band).numpy().astype(np.float32), rel=1e-4)
    edges = torch.cat([vh[:8], vh[24:]]).numpy()  # the 8 top and 8 bottom directions are gone, and only they
    assert np.abs(filtered @ edges.T).max() < 1e-4 * np.abs(filtered).max() < np.abs(plain @ edges.T).max()


def test_embed_filter_on_tied_embeddings_does_not_depend_on_whether_tp_ran_first():
    def fresh():
        model = make_model("gemma3")
        model.resize_token_embeddings(416, mean_resizing=False)  # spare rows, as many real vocabularies have
        return prepare_model(model, make_tokenizer(), {"name": "tiny-gemma3"})

    first = fresh()
    assert first.unembedding is first.model.get_input_embeddings().weight  # tied: TP writes <PST> into it
    row = placeholder_row(first.tokenizer)
    assert row < first.unembedding.shape[0]  # the <PST> row lies inside the lm_head's matrix
    before = Encoder(first, use_which_plan="vanilla", embed_filter=1.5).encode(SENTENCES)
    second = fresh()
    Encoder(second, **TP).encode(SENTENCES)  # TP writes its <PST> row first
    assert placeholder_row(second.tokenizer) == row
    after = Encoder(second, use_which_plan="vanilla", embed_filter=1.5).encode(SENTENCES)
    assert_vectors_close(after, before, rel=1e-5)


def test_embed_filter_needs_an_unembedding_matrix():
    loaded = prepare_model(make_model("llama").model, make_tokenizer(), {"name": "base-only"})
    assert loaded.unembedding is None
    with pytest.raises(ValueError, match="unembedding"):
        Encoder(loaded, use_which_plan="vanilla", embed_filter=1.5)


def test_search_options_parse_and_the_scorer_gives_what_eval_gives(llama, tmp_path, monkeypatch):
    assert parse_demos("none,storm,storm+chef,storm|jockey+chef") == [
        None, "storm", ("storm", "chef"), DemoEnsemble(("storm", ("jockey", "chef")))]
    assert parse_filters("off,1.5") == [None, 1.5]
    with pytest.raises(ValueError):
        parse_demos("storm|storm")
    with pytest.raises(ValueError):
        parse_filters("0.5")
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    scorer = DevScorer(llama, dev_pairs(DATA_DIR, 12), [3, 4], {"model": "tiny-llama", "batch_size": 5},
                       progress=False)
    for settings in (dict(demo_ensemble=["storm", ["jockey", "chef"]], prompt_method=["prompteol", "ke"]),
                     dict(demonstration=["storm", "chef"], embed_filter=1.5, output_layer=[3, 4]),
                     dict(demo_ensemble=["storm", "chef"], embed_filter=2.0, cp_layer=1, cp_alpha=0.5)):
        candidate = Candidate(**{**TP, "output_layer": 4, **settings})
        config = RunConfig(model="tiny-llama", batch_size=5, mode="dev", task_set="stsb", **candidate.settings())
        separate = run_evaluation(config, DATA_DIR, limit=12, use_cache=False, loaded=llama, progress=False)
        assert scorer.score(candidate) == pytest.approx(separate["scores"]["STSBenchmark-dev"], abs=1e-6)
