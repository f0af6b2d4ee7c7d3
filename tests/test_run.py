"""The paper's named-config interface: YAML validation, `tpembed run` end to end on a slice."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.config import EncoderConfig, default_config_path, load_config_file, parse_overrides, resolve_run_config

PAPER_ENTRIES = ["llama-2-7b", "llama-2-7b-tp", "llama-2-13b-tp", "llama-3-8b-tp", "qwen2-7b-tp", "gemma2-9b-tp"]


def test_shipped_config_holds_the_paper_entries_and_the_packaged_models():
    config = load_config_file(default_config_path())
    for name in PAPER_ENTRIES + ["smollm2-135m", "smollm2-135m-tp", "gemma3-270m", "gemma3-270m-tp"]:
        assert name in config.models
    llama = config.models["llama-2-7b-tp"]
    assert (llama.use_which_plan, llama.output_layer, llama.tp_starting_index, llama.tp_exiting_index) == ("tp", 27, 1, 7)
    for name in ("qwen2-7b-tp", "gemma2-9b-tp"):
        entry = config.models[name]
        assert (entry.output_layer, entry.tp_starting_index, entry.tp_exiting_index) == (-2, 1, 6)


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_bad_configs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'tp_exit' \\(did you mean 'tp_exiting_index'\\?\\)"):
        load_config_file(_write(tmp_path, "models:\n  a:\n    model_name_or_path: x\n    tp_exit: 3\n"))
    with pytest.raises(ValueError, match="use_which_plan"):
        load_config_file(_write(tmp_path, "models:\n  a:\n    use_which_plan: maybe\n"))
    with pytest.raises(ValueError, match="task_set"):
        load_config_file(_write(tmp_path, "models:\n  a:\n    task_set: everything\n"))
    with pytest.raises(ValueError, match="default_config 'b' is not one of"):
        load_config_file(_write(tmp_path, "default_config: b\nmodels:\n  a: {}\n"))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config_file(_write(tmp_path, "models: [unclosed\n"))
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.yaml")
    good = _write(tmp_path, "models:\n  a:\n    model_name_or_path: x\n")
    with pytest.raises(ValueError, match="'zzz' not found.*available: a"):
        resolve_run_config(good, "zzz")
    with pytest.raises(ValueError, match="tp_exiting_index"):
        resolve_run_config(good, "a", {"tp_starting_index": 5, "tp_exiting_index": 2})
    run_config = resolve_run_config(good, "a", parse_overrides(["batch_size=3", "max_length=null"]))
    assert run_config.batch_size == 3
    encoder_config = run_config.encoder_config()  # what the Encoder gets: everything but what to evaluate
    assert type(encoder_config) is EncoderConfig
    assert encoder_config.model_dump() == run_config.model_dump(exclude={"mode", "task_set"})
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["batch_size"])


def test_cli_run_reports_config_and_data_errors(tmp_path):
    result = CliRunner().invoke(app, ["run", "no-such-entry"])
    assert result.exit_code == 2 and "not found" in result.output
    result = CliRunner().invoke(app, ["run", "smollm2-135m", "--data", str(tmp_path / "nodata"), "--limit", "2"])
    assert result.exit_code == 2 and "nodata" in result.output


@pytest.mark.packaged
def test_run_end_to_end_on_a_small_slice(tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results.json"
    args = ["run", "smollm2-135m-tp", "--data", str(DATA_DIR), "--limit", "3", "--set", "batch_size=64", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "STS-B" in result.output and "Avg." in result.output
    assert "encoding" in result.output  # the progress bar of a run that had work to do
    doc = json.loads(out.read_text())
    expected = {"STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness", "STSAvg"}
    assert expected <= set(doc["scores"])
    assert doc["config"]["use_which_plan"] == "tp" and doc["model"]["sha256"]
    assert "torch" in doc["versions"] and doc["wall_seconds"] > 0
    # a second run reuses the on-disk embedding cache and gives the same numbers
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    assert json.loads(out.read_text())["scores"] == doc["scores"]
    assert "encoding" not in again.output  # nothing left to encode


@pytest.mark.packaged
def test_eval_runs_the_transfer_suite_with_probe_workers(tmp_path, monkeypatch):
    # the CLI's --probe-jobs reaches every probe (that workers leave scores unchanged is
    # test_parallel_grid_matches_sequential); a transfer run end to end on a packaged model
    import tpembed.evaluation.runner as runner

    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    seen: list = []
    real = runner.score_transfer

    def spy(*args, **kwargs):
        seen.append(kwargs["n_jobs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "score_transfer", spy)
    out = tmp_path / "transfer.json"
    args = ["eval", "--task-set", "transfer", "--mode", "fasttest", "--data", str(DATA_DIR), "--limit", "40",
            "--probe-jobs", "2", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == [2] * 7
    doc = json.loads(out.read_text())
    assert set(doc["scores"]) == {"MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC", "TransferAvg"}
    assert doc["details"]["TREC"]["not_converged"] == 0 and doc["details"]["TREC"]["seconds"] > 0
    assert CliRunner().invoke(app, ["eval", "--probe-jobs", "0"]).exit_code == 2
