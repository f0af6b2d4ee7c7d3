"""The CLI answers every user error with one `error:` line (exit 2, no traceback), before any work."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
from conftest import DATA_DIR
from typer.testing import CliRunner

from tpembed.cli import app


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_set_model_name_or_path_is_accepted(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    result = invoke("run", "smollm2-135m", "--set", f"model_name_or_path={tiny_folder}", "--set", "output_layer=2",
                    "--data", str(DATA_DIR), "--limit", "3", "--set", "task_set=stsb", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert str(tiny_folder) in out.read_text()  # the override reached the model


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_outputs_are_refused_before_any_work_nonroot(tmp_path):  # pragma: no cover - CI runs as root
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    _one_line_error(invoke("encode", "a", "-o", str(locked / "x.npy")), "not writable")


def test_outputs_under_a_file_are_refused_before_encoding(tiny_folder, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    calls = []
    import tpembed.encoder

    monkeypatch.setattr(tpembed.encoder.Encoder, "__init__", lambda *a, **k: calls.append(1))
    _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "--tp-exiting-index", "2",
                           "-o", str(blocker / "emb.npy")), "is not a folder")
    result = invoke("eval", "--model", str(tiny_folder), "--tp-exiting-index", "2", "--data", str(DATA_DIR),
                    "-o", str(blocker / "sub" / "r.json"))
    _one_line_error(result, "is not a folder")
    _one_line_error(invoke("encode", "a", "-o", str(tmp_path)), "is a folder")
    assert calls == []  # refused before any model was built
    assert not (blocker.parent / "sub").exists()


def test_encode_output_path_printed_is_the_path_written(tiny_folder, tmp_path):
    result = invoke("encode", "a man", "a dog", "--model", str(tiny_folder), "--use-which-plan", "vanilla",
                    "-o", str(tmp_path / "new" / "emb"))
    assert result.exit_code == 0, result.output
    written = tmp_path / "new" / "emb.npy"
    assert f"saved {written}" in result.output and np.load(written).shape == (2, 32)


def test_eval_creates_missing_parents_only_on_success(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "a" / "b" / "r.json"
    bad = invoke("eval", "--model", str(tiny_folder), "--tp-exiting-index", "2", "--data", str(tmp_path / "nodata"),
                 "-o", str(target))
    _one_line_error(bad, "nodata")
    assert not (tmp_path / "a").exists()


def test_layer_numbers_are_checked_from_the_files_before_torch_loads(tiny_folder):
    """`--set output_layer=999` fails before torch is imported (it took 8 s): the config.json is read as JSON."""
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from tpembed.cli import app; "
        f"r = CliRunner().invoke(app, ['encode', 'a', '--model', {str(tiny_folder)!r}, '--set', 'output_layer=999']); "
        "print(r.output); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "error: output_layer=999 is out of range for a model with 4 decoder layers" in out
    assert out.strip().endswith("False"), out  # torch was never imported
    _one_line_error(invoke("run", "--model", str(tiny_folder), "--tp-exiting-index", "9"), "tp_exiting_index=9")
    _one_line_error(invoke("serve", "--model", str(tiny_folder), "--cp-layer", "4", "--tp-exiting-index", "2"),
                    "cp_layer=4 is beyond")


def test_bad_devices_models_and_inputs_are_one_line(tiny_folder, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "--tp-exiting-index", "2", "--device", "cuda"), "CUDA is not available")
    _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "--tp-exiting-index", "2", "--device", "gpu"), "unknown device 'gpu'")
    _one_line_error(invoke("encode", "a", "--model", "not a model"), "not a valid hub id")
    # argv decoded with surrogateescape turns invalid UTF-8 into lone surrogates
    result = invoke("encode", "ok", "bad\udcff", "--model", str(tiny_folder), "--use-which-plan", "vanilla")
    _one_line_error(result, "lone surrogate")


def test_sweep_accepts_negative_output_layers(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    result = invoke("sweep", "--model", str(tiny_folder), "--data", str(DATA_DIR), "--limit", "6", "--exits", "2",
                    "--outputs", "-3..-1", "--out", str(tmp_path / "sweep"), "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert re.search(r"plan +2 +3 +4\n", result.output), result.output  # -3..-1 of a 4-layer model
    _one_line_error(invoke("sweep", "--model", str(tiny_folder), "--data", str(DATA_DIR), "--outputs", "0..2",
                           "--out", str(tmp_path / "s2")), "out of range")


# every command that takes a config, as a user would call it (the config errors come before any
# model loads or any file is read, so nothing here is slow)
CONFIG_COMMANDS = {
    "run": ["run", "smollm2-135m-tp"],
    "eval": ["eval", "smollm2-135m-tp"],
    "encode": ["encode", "--name", "smollm2-135m-tp", "A man is playing a guitar."],
    "embed": ["embed", "--name", "smollm2-135m-tp", "corpus.jsonl", "-o", "out"],
    "serve": ["serve", "smollm2-135m-tp"],
    "compare": ["compare", "smollm2-135m", "smollm2-135m-tp"],
    "sweep": ["sweep", "smollm2-135m-tp"],
    "search": ["search", "smollm2-135m-tp"],
    "mteb": ["mteb", "smollm2-135m-tp", "--tasks", "STSBenchmark"],
}


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_every_config_command_answers_a_bad_setting_in_one_line(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = CONFIG_COMMANDS[command]
    # a misspelt key: the closest valid one, no pydantic wording or URL
    result = invoke(*args, "--set", "output_layr=5")
    _one_line_error(result, "unknown key 'output_layr'", "did you mean 'output_layer'?")
    # a bad value: the key, the value and what it must be
    result = invoke(*args, "--set", "output_layer=abc")
    _one_line_error(result, "output_layer='abc' is not valid", "must be an int")
    for result in (invoke(*args, "--set", "output_layr=5"), invoke(*args, "--set", "use_which_plan=tpp")):
        assert "pydantic" not in result.output and "validation error" not in result.output
        assert "Extra inputs" not in result.output and "Input should be" not in result.output
    # an option with a bad value or a misspelt option: one line too, naming --help
    typo, right = ("--resampels", "--resamples") if command == "compare" else ("--bacth-size", "--batch-size")
    _one_line_error(invoke(*args, typo, "3"), typo, right, "--help")


def test_config_file_keys_get_the_closest_valid_one(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  mine:\n    model_name_or_path: smollm2-135m\n    outputlayer: 3\n")
    _one_line_error(invoke("run", "mine", "--config", str(config)), "entry 'mine'", "unknown key 'outputlayer'",
                    "did you mean 'output_layer'?", str(config))


def test_encoder_settings_get_one_clear_message():
    from tpembed import Encoder

    with pytest.raises(ValueError) as info:
        Encoder(outputlayer=5)
    message = str(info.value)
    assert "unknown key 'outputlayer' (did you mean 'output_layer'?)" in message
    assert "\n" not in message and "pydantic" not in message and "Extra inputs" not in message
    with pytest.raises(ValueError, match=r"^tp_starting_index=-1 is not valid: must be greater than or equal to 0"):
        Encoder(tp_starting_index=-1)


@pytest.mark.parametrize("command", ["encode", "embed"])
def test_a_config_name_as_first_argument_names_the_right_spelling(command, tmp_path, monkeypatch):
    """`tpembed encode smollm2-135m-best "A man..."` used to embed the config's name as a sentence."""
    monkeypatch.chdir(tmp_path)
    calls = []
    import tpembed.encoder

    monkeypatch.setattr(tpembed.encoder.Encoder, "__init__", lambda *a, **k: calls.append(1))
    rest = ["A man is playing a guitar."] if command == "encode" else ["corpus.jsonl", "-o", "out"]
    result = invoke(command, "smollm2-135m-best", *rest)
    _one_line_error(result, "'smollm2-135m-best' is a config name", f"tpembed {command} --name smollm2-135m-best")
    assert calls == []


def test_run_output_says_what_it_measured_and_where_it_went(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    args = ["run", "--model", str(tiny_folder), "--tp-exiting-index", "2", "--data", str(DATA_DIR), "--limit", "3",
            "--task-set", "stsb", "-q"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "Spearman correlation x100" in first.output and str(tiny_folder) in first.output.splitlines()[0]
    assert "results not saved: add -o results.json" in first.output and "encoded in" in first.output
    again = invoke(*args, "-o", str(tmp_path / "r.json"))
    assert again.exit_code == 0, again.output
    assert "all from the embedding cache" in again.output and f"results written to {tmp_path / 'r.json'}" in again.output


def test_help_is_wide_and_whole():
    for command in ("run", "encode", "embed", "serve", "sweep", "search", "mteb", "compare"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "100"}).output
        assert "…" not in text and "<bool>" not in text and "<str>" not in text, text
        assert max(len(line) for line in text.splitlines()) <= 100
        assert "--batch-size" in text or command == "compare"
    run_help = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "100"}).output
    assert "--prefix-cache / --no-prefix-cache" in run_help and len(run_help.splitlines()) < 100


def test_encode_names_its_config_on_stderr(tiny_folder):
    result = invoke("encode", "a man", "", "--model", str(tiny_folder), "--use-which-plan", "vanilla")
    assert result.exit_code == 0, result.output
    assert "settings (no named config):" in result.stderr and "vanilla" in result.stderr
    assert "named config" not in result.stdout and "embeddings: 2 x 32" in result.stdout  # "" is a text
