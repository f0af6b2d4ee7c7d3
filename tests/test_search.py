"""`tpembed search`: a candidate's dev score equals a separate eval; coordinate ascent keeps the best;
ensembles and layer windows cost no extra pass; outputs load back; the CLI runs end to end."""

from __future__ import annotations

import csv

import pytest
from conftest import DATA_DIR, make_model, make_tokenizer
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.config import RunConfig, resolve_run_config
from tpembed.models import prepare_model
from tpembed.evaluation.pipeline import run_evaluation
from tpembed.tuning import (
    Candidate,
    DevScorer,
    SearchSpace,
    ablation,
    dev_pairs,
    parse_cp_layers,
    parse_prompt_options,
    parse_tp_options,
    plan_settings,
    run_search,
    short_model_name,
    write_outputs,
)

LIMIT = 12
SPACE = dict(prompts=[("prompteol",), ("ke",), ("prompteol", "ke")], tp=[None, (1, 2)], cp_layers=[None, 1],
             cp_alphas=[1.0, 0.5], cp_mode="ns", poolings=["last_token", "attention_sum"], demos=[None, "chef"], outputs=[2, 3, 4],
             max_window=2)


def recipe(prompts, tp, cp_layer, cp_alpha, layers, pooling="last_token", demo=None):
    """A candidate in the search's own field order."""
    return Candidate(prompt_method=prompts, **plan_settings(tp), output_layer=layers, cp_layer=cp_layer,
                     cp_alpha=cp_alpha, cp_mode="ns", pooling=pooling, demonstration=demo)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    return prepare_model(make_model("llama"), make_tokenizer(), {"name": "tiny-llama", "sha256": "tiny-llama-seed0"})


def test_a_candidate_scores_what_a_separate_eval_of_its_settings_scores(tiny):
    space = SearchSpace(**SPACE)
    scorer = DevScorer(tiny, dev_pairs(DATA_DIR, LIMIT), space.outputs, {"model": "tiny-llama", "batch_size": 5},
                       progress=False)
    for candidate in [recipe(("prompteol", "ke"), (1, 2), 1, 0.5, (3, 4)),
                      recipe(("ke",), None, None, 1.0, (4,)),
                      recipe(("ke", "prompteol"), (1, 2), None, 1.0, (3,), "attention_sum", "storm")]:
        config = RunConfig(model="tiny-llama", batch_size=5, mode="dev", task_set="stsb", **candidate.settings())
        separate = run_evaluation(config, DATA_DIR, limit=LIMIT, use_cache=False, loaded=tiny, progress=False)
        assert scorer.score(candidate) == pytest.approx(separate["scores"]["STSBenchmark-dev"], abs=1e-6)


def test_coordinate_ascent_keeps_the_best_and_ensembles_cost_no_pass(tiny, tmp_path):
    result = run_search(tiny, SearchSpace(**SPACE), data_dir=DATA_DIR, limit=LIMIT, progress=False, batch_size=5)
    assert result.best_score == max(e.spearman for e in result.evaluations)
    assert {e.axis for e in result.evaluations} >= {"start", "prompts", "demo", "tp", "cp_layer", "pooling", "layers"}
    # rows are (single method, plan, CP): the ensemble option reuses its members' rows
    rows = {(m, c["use_which_plan"], c["tp_starting_index"], c["tp_exiting_index"], c["cp_layer"],
             c["cp_alpha"] if c["cp_layer"] is not None else None, c["pooling"], c["demonstration"])
            for c in (e.candidate for e in result.evaluations) for m in c.as_list("prompt_method")}
    assert result.rows_encoded == len(rows)
    again = run_search(tiny, SearchSpace(**SPACE), data_dir=DATA_DIR, limit=LIMIT, progress=False, batch_size=5)
    assert again.rows_encoded == 0 and again.best == result.best  # all from the embedding cache

    paths = write_outputs(result, tmp_path / "out", "tiny")
    ranked = list(csv.DictReader(paths["ranked"].open()))
    assert float(ranked[0]["spearman"]) == pytest.approx(result.best_score, abs=1e-4)
    assert resolve_run_config(paths["yaml"]) == result.run_config().model_copy(update={"model": "tiny-llama"})

    scorer = DevScorer(tiny, dev_pairs(DATA_DIR, LIMIT), SPACE["outputs"], result.base_settings, progress=False)
    labels = [label for label, _, _ in ablation(scorer, recipe(("prompteol", "ke"), (1, 2), 1, 0.5, (3, 4)), [2, 3, 4])]
    assert labels[0] == "recipe" and "- TP (vanilla plan)" in labels and "- CP" in labels
    assert sum(label.startswith("- ensemble") for label in labels) == 2


def test_options_parse_and_bad_ones_are_refused(tiny):
    assert parse_prompt_options("prompteol,cot+ke") == [("prompteol",), ("cot", "ke")]
    assert parse_tp_options("vanilla,1-3") == [None, (1, 3)]
    assert parse_cp_layers("off,2") == [None, 2]
    with pytest.raises(ValueError):
        parse_prompt_options("cot+nope")
    with pytest.raises(ValueError):
        parse_tp_options("3-1")
    with pytest.raises(ValueError, match="CP layers"):
        run_search(tiny, SearchSpace(**{**SPACE, "cp_layers": [None, 4]}), data_dir=DATA_DIR, limit=LIMIT,
                   progress=False)
    with pytest.raises(ValueError, match="not searchable EncoderConfig fields"):
        Candidate(batch_size=4)  # candidates hold the config's searchable fields, by their own names
    assert Candidate(output_layer=[3]) == Candidate(output_layer=3)  # a list of one is that layer, as in the config


def test_entry_names_keep_the_whole_model_name():
    assert short_model_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2.5-0.5B-Instruct"
    assert short_model_name("models/tiny.gguf") == "tiny" and short_model_name("/tmp/tiny/") == "tiny"


def test_cli_search_runs_end_to_end_on_a_saved_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    make_model("llama").save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    out = tmp_path / "search"
    result = CliRunner().invoke(app, [
        "search", "--model", str(folder), "--prompts", "prompteol,ke+prompteol", "--tp", "vanilla,1-2",
        "--cp-layers", "off,1", "--outputs", "2,3", "--max-window", "2", "--limit", str(LIMIT), "--data",
        str(DATA_DIR), "--out", str(out), "--ablate", "--time-sentences", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "best on STS-B dev" in result.output and "time ratio" in result.output
    assert {p.name for p in out.iterdir()} >= {"grid.csv", "ranked.csv", "search.json", "best.yaml", "ablation.md"}
    # vanilla's "last layer" is the model's (4), not the last of --outputs
    last = r"| vanilla PromptEOL, last layer 4: prompteol \| vanilla \| CP off \| layers 4 |"
    assert last in (out / "ablation.md").read_text()
    bad = CliRunner().invoke(app, ["search", "--model", str(folder), "--tp", "1-9", "--data", str(DATA_DIR),
                                   "--out", str(tmp_path / "bad"), "--quiet"])
    assert bad.exit_code == 2 and "beyond" in bad.output
