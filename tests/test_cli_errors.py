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
    _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "-o", str(blocker / "emb.npy")),
                    "is not a folder")
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


def test_bad_devices_models_and_inputs_are_one_line(tiny_folder, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "--device", "cuda"), "CUDA is not available")
    _one_line_error(invoke("encode", "a", "--model", str(tiny_folder), "--device", "gpu"), "unknown device 'gpu'")
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
