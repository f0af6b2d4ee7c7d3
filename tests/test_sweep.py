"""`tpembed sweep`: the grid equals separate evals, one pass per row, resumable, clear errors."""

from __future__ import annotations

import csv
import math

import pytest
from conftest import DATA_DIR, make_model, make_tokenizer
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.config import RunConfig, load_config_file, resolve_run_config
from tpembed.encoder import Encoder
from tpembed.evaluation import task_sentences
from tpembed.models import prepare_model
from tpembed.evaluation.pipeline import run_evaluation
from tpembed.tuning import (
    check_grid,
    parse_layers,
    run_sweep,
    write_best_yaml,
    write_grid,
    write_heatmap,
)

LIMIT = 12  # STS-B dev pairs: 24 sentences, enough for a Spearman with few ties
GRID = dict(tp_starting_index=1, exits=[2, 3], outputs=[2, 3, 4], batch_size=5)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny random Llama with a stable identity (so the embedding cache applies) and a private cache."""
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    return prepare_model(make_model("llama"), make_tokenizer(), {"name": "tiny-llama", "sha256": "tiny-llama-seed0"})


def _sweep(loaded, **kw):
    return run_sweep(loaded, "prompteol", data_dir=DATA_DIR, limit=LIMIT, progress=False, **{**GRID, **kw})


def test_a_sweep_cell_equals_a_separate_eval_exactly(tiny):
    result = _sweep(tiny)
    assert list(result.scores) == ["vanilla", "2", "3"]
    scores = {(e, k): s for e, k, s in result.cells()}
    assert len(scores) == 3 * 3 and all(math.isfinite(s) for s in scores.values())
    assert len(set(scores.values())) > 3  # the layers and plans really differ
    for exit_layer, layer in [(None, 4), (3, 2), (2, 3)]:
        plan = dict(use_which_plan="vanilla") if exit_layer is None else dict(
            use_which_plan="tp", tp_starting_index=1, tp_exiting_index=exit_layer
        )
        config = RunConfig(model="tiny-llama", output_layer=layer, batch_size=5, mode="dev", task_set="stsb", **plan)
        separate = run_evaluation(config, DATA_DIR, limit=LIMIT, use_cache=False, loaded=tiny, progress=False)
        assert separate["scores"]["STSBenchmark-dev"] == scores[(exit_layer, layer)]


def test_one_forward_pass_per_row_and_the_cache_resumes(tiny, monkeypatch):
    # forward calls one row costs: one encode of the same sentences at a single layer
    probe = Encoder(tiny, use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, batch_size=5)
    calls = []
    handle = tiny.model.register_forward_pre_hook(lambda *_: calls.append(1))
    probe.encode(task_sentences(["STSBenchmark-dev"], DATA_DIR, LIMIT))
    handle.remove()
    per_row = len(calls)

    # interrupt the sweep during its second row: the first row is already in the cache
    original = Encoder.encode_layers
    seen = []

    def flaky(self, *args, **kwargs):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode_layers", flaky)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tiny)
    monkeypatch.setattr(Encoder, "encode_layers", original)

    resumed = _sweep(tiny)
    assert resumed.encoded_rows == 2  # vanilla came from the cache
    assert resumed.forward_passes == 2 * per_row  # one pass per row, not one per output layer
    again = _sweep(tiny)
    assert again.forward_passes == 0 and again.encoded_rows == 0
    assert again.scores == resumed.scores


def test_outputs_are_written_and_best_yaml_loads(tiny, tmp_path):
    result = _sweep(tiny, use_cache=False)
    csv_path, json_path = write_grid(result, tmp_path / "out")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 9 and {r["tp_exiting_index"] for r in rows} == {"", "2", "3"}
    png = write_heatmap(result, tmp_path / "out" / "heatmap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    path, name = write_best_yaml(result, tmp_path / "out" / "best.yaml")
    config = load_config_file(path)
    assert config.default_config == name and name in config.models
    best_exit, best_layer, _ = result.best()
    entry = resolve_run_config(path)  # the default entry, as `tpembed run --config best.yaml` resolves it
    assert entry.output_layer == best_layer and entry.mode == "test" and entry.task_set == "sts"
    assert entry.use_which_plan == ("vanilla" if best_exit is None else "tp")
    if best_exit is not None:
        assert (entry.tp_starting_index, entry.tp_exiting_index) == (1, best_exit)
    tp_entry = config.models[f"{name.removesuffix('-best')}-best-tp"]
    tp_exit, tp_layer, _ = result.best("tp")
    assert (tp_entry.tp_exiting_index, tp_entry.output_layer) == (tp_exit, tp_layer)


def test_layer_ranges_parse_and_bad_grids_are_refused():
    assert parse_layers("2..5") == [2, 3, 4, 5]
    assert parse_layers("7,3,3") == [3, 7]
    with pytest.raises(ValueError, match="end must be >= the start"):
        parse_layers("5..2")
    with pytest.raises(ValueError, match="a..b"):
        parse_layers("two")
    with pytest.raises(ValueError, match=r"exit must be > tp_starting_index \(3\)"):
        check_grid(30, 3, [3, 5], [30])
    with pytest.raises(ValueError, match="<= 30"):
        check_grid(30, 1, [31], [30])
    with pytest.raises(ValueError, match=r"output layers \[31\] are out of range: use 1..30"):
        check_grid(30, 1, [4], [29, 31])


def test_sweep_refuses_a_bad_range_before_encoding(tiny):
    with pytest.raises(ValueError, match="out of range"):
        _sweep(tiny, outputs=[4, 5])  # the tiny model has 4 layers
    with pytest.raises(ValueError, match="exit must be"):
        _sweep(tiny, exits=[1])


@pytest.mark.packaged
def test_cli_sweep_reports_a_bad_range_clearly(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--model", "smollm2-135m", "--exits", "2..31", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "TP exit layers [31] are invalid" in result.output
