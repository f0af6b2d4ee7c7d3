"""One way to name settings on every command (NAME / --config / --set / options), and one default.

The resolution tests run on a throwaway typer app (no model); the command tests stop each
command where it would load the model and look at the config it was about to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.cli._common import config_source
from tpembed.config import EncoderConfig, RunConfig, default_config_name, default_config_path, resolve_config

DEFAULT = default_config_name()
ENCODER_COMMANDS = ["run", "eval", "encode", "serve", "embed", "mteb", "sweep", "search"]


def one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- the declaration, on every command


@pytest.mark.parametrize("name", ENCODER_COMMANDS)
def test_every_encoder_command_takes_the_same_config_source_and_names_the_default(name):
    command = get_command(app).commands[name]
    options = {opt for param in command.params for opt in param.opts}
    arguments = {param.name for param in command.params if param.param_type_name == "argument"}
    assert {"--config", "--set"} <= options
    if name in ("encode", "embed"):  # their positional arguments are the sentences / the inputs
        assert "--name" in options
    else:
        assert "source_name" in arguments  # NAME (several for serve)
    fields = set(RunConfig.model_fields if name in ("run", "eval") else EncoderConfig.model_fields)
    if name in ("sweep", "search"):  # a tuner sets the settings it varies from its own options
        assert "--model" in options
    else:
        assert {f"--{field.replace('_', '-')}" for field in fields} <= options
    assert DEFAULT in command.help  # the help says which config is used when none is named


def test_run_and_eval_are_one_command():
    callbacks = {command.name: command.callback for command in app.registered_commands}
    assert callbacks["run"] is callbacks["eval"]


# --------------------------------------------------------------------------- resolution (no model)


def probe_app(names: str, **kwargs: Any) -> tuple[typer.Typer, dict[str, Any]]:
    """A one-command app that records what config_source hands it."""
    seen: dict[str, Any] = {}
    probe = typer.Typer()

    if names == "many":

        @probe.command()
        @config_source("many", **kwargs)
        def serve_like(run_configs: Any = None) -> None:
            seen["configs"] = run_configs

    else:

        @probe.command()
        @config_source(names, **kwargs)
        def one(
            texts: list[str] = typer.Argument(None),
            run_config: Any = None,
            config_name: Any = None,
            config_file: Any = None,
        ) -> None:
            seen.update(config=run_config, name=config_name, file=config_file)

    @probe.command()
    def other() -> None:  # two commands: typer then needs the command's name, as in tpembed
        pass

    return probe, seen


@pytest.fixture
def two_entries(tmp_path) -> Path:
    path = tmp_path / "mine.yaml"
    entries = {
        "first": {"model_name_or_path": "smollm2-135m", "use_which_plan": "vanilla", "output_layer": 20},
        "second": {"model_name_or_path": "smollm2-135m", "tp_starting_index": 1, "tp_exiting_index": 4},
    }
    path.write_text(yaml.safe_dump({"default_config": "second", "models": entries}))
    return path


def test_name_file_set_and_options_resolve_the_one_way(two_entries):
    probe, seen = probe_app("one", run_options=True)
    run = lambda *args: CliRunner().invoke(probe, ["one", *args])  # noqa: E731

    assert run().exit_code == 0 and seen["config"] == resolve_config()
    assert (seen["name"], seen["file"]) == (DEFAULT, default_config_path())
    assert run("smollm2-135m-best").exit_code == 0 and seen["config"] == resolve_config("smollm2-135m-best")
    # --config FILE: its default entry, or the one NAME picks; a .yaml NAME is that file
    assert run("--config", str(two_entries)).exit_code == 0
    assert seen["config"] == resolve_config(two_entries) and seen["config"].tp_exiting_index == 4
    assert (seen["name"], seen["file"]) == ("second", two_entries)
    assert run("first", "--config", str(two_entries)).exit_code == 0 and seen["config"].output_layer == 20
    assert run(str(two_entries)).exit_code == 0 and seen["name"] == "second"
    # --set over the entry, options over --set; --set takes RunConfig keys too
    result = run("first", "--config", str(two_entries), "--set", "output_layer=21", "--set", "mode=dev",
                 "--set", "batch_size=3", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    assert (seen["config"].output_layer, seen["config"].mode, seen["config"].batch_size) == (21, "dev", 5)
    assert run("--task-set", "stsb").exit_code == 0 and seen["config"].task_set == "stsb"  # run_options
    # a model without a config: EncoderConfig's defaults (the default config's layers are its own model's)
    assert run("--model", "gemma3-270m").exit_code == 0
    assert seen["config"] == RunConfig(model="gemma3-270m") and seen["name"] is None


def test_option_mode_takes_name_as_an_option_beside_positional_arguments():
    probe, seen = probe_app("option")
    result = CliRunner().invoke(probe, ["one", "a", "b", "--name", "smollm2-135m", "--tp-exiting-index", "3"])
    assert result.exit_code == 0, result.output
    assert seen["config"] == resolve_config("smollm2-135m", {"tp_exiting_index": 3})
    assert "--mode" not in {o for p in get_command(probe).commands["one"].params for o in p.opts}


def test_many_names_for_a_server():
    probe, seen = probe_app("many")
    run = lambda *args: CliRunner().invoke(probe, ["serve-like", *args])  # noqa: E731
    assert run().exit_code == 0 and seen["configs"] == {DEFAULT: resolve_config()}
    assert run("smollm2-135m", "smollm2-135m-best", "--device", "cpu").exit_code == 0
    assert seen["configs"] == {n: resolve_config(n, {"device": "cpu"}) for n in ("smollm2-135m", "smollm2-135m-best")}
    assert run("--model", "gemma3-270m").exit_code == 0 and list(seen["configs"]) == ["gemma3-270m"]
    one_line_error(run("smollm2-135m", "smollm2-135m"), "named twice")


def test_bad_sources_are_one_line_errors_that_name_the_fix(tmp_path, two_entries):
    probe, _ = probe_app("one")
    run = lambda *args: CliRunner().invoke(probe, ["one", *args])  # noqa: E731
    line = one_line_error(run("no-such-config"), "'no-such-config'", "available:", DEFAULT, "smollm2-135m-best")
    assert "llama-2-7b-tp" in line  # the paper's configs stay available by name
    one_line_error(run("zzz", "--config", str(two_entries)), "'zzz'", "first, second")
    not_yaml = tmp_path / "notes.txt"
    not_yaml.write_text("models: [unclosed\n")
    one_line_error(run("--config", str(not_yaml)), str(not_yaml), "not valid YAML")
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- a\n- b\n")
    one_line_error(run("--config", str(a_list)), str(a_list))
    one_line_error(run("--config", str(tmp_path / "missing.yaml")), "missing.yaml", "does not exist")
    one_line_error(run("--set", "tp_exiting_index"), "--set expects key=value")
    one_line_error(run("--set", "no_such_key=1"), "no_such_key")
    one_line_error(run("--use-which-plan", "sometimes"), "use_which_plan")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "no-such-config"],
        ["eval", "no-such-config"],
        ["encode", "a", "--name", "no-such-config"],
        ["serve", "smollm2-135m", "no-such-config"],
        ["embed", "x.txt", "-o", "out", "--name", "no-such-config"],
        ["mteb", "--tasks", "STSBenchmark", "no-such-config"],
    ],
)
def test_every_command_lists_the_names_for_an_unknown_one(args):
    one_line_error(CliRunner().invoke(app, args), "'no-such-config'", "available:", DEFAULT)


@pytest.mark.parametrize("command", [["run"], ["encode", "a"], ["serve"], ["embed", "x.txt", "-o", "out"],
                                     ["mteb", "--tasks", "STSBenchmark"]])
def test_every_command_names_a_config_file_that_is_not_yaml(command, tmp_path):
    bad = tmp_path / "settings.txt"
    bad.write_text("models: {a: [1, 2\n")
    one_line_error(CliRunner().invoke(app, [*command, "--config", str(bad)]), str(bad))


# --------------------------------------------------------------------------- one default everywhere


class Stop(ValueError):
    """Raised where a command would load the model (a ValueError: the CLI prints it as one line)."""


@pytest.fixture
def loads(monkeypatch) -> list[EncoderConfig]:
    """The configs every entry point was about to load; nothing is loaded."""
    import tpembed.corpus
    import tpembed.models

    seen: list[EncoderConfig] = []

    def record(config: EncoderConfig, *args: Any, **kwargs: Any) -> Any:
        seen.append(config)
        raise Stop("stopped before loading")

    def record_corpus(inputs: Any, output: Any, config: EncoderConfig, **kwargs: Any) -> Any:
        return record(config)

    monkeypatch.setattr(tpembed.models, "load_checked", record)
    monkeypatch.setattr(tpembed.models, "check_before_loading", record)
    monkeypatch.setattr(tpembed.corpus, "embed_corpus", record_corpus)
    return seen


@pytest.mark.parametrize(
    "args",
    [["encode", "a"], ["serve"], ["embed", "in.txt", "-o", "out"], ["mteb", "--tasks", "mteb.mocks:MockSTSTask"],
     ["eval", "--data", "."]],
)
def test_commands_with_nothing_named_use_the_default_config(args, loads, monkeypatch):
    if args[0] == "eval":  # stop at the evaluation, after the data check
        import tpembed.evaluation
        import tpembed.evaluation.pipeline

        monkeypatch.setattr(tpembed.evaluation, "ensure_senteval", lambda data, *a, **k: data)
        monkeypatch.setattr(tpembed.evaluation.pipeline, "run_evaluation",
                            lambda config, *a, **k: (loads.append(config), (_ for _ in ()).throw(Stop("stop"))))
    result = CliRunner().invoke(app, args)
    one_line_error(result, "stop")
    assert loads and loads[0].model_dump(include=set(EncoderConfig.model_fields)) == resolve_config().encoder_config().model_dump()


def test_the_library_adapters_with_nothing_named_use_the_default_config(loads):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("mteb")
    from tpembed import mteb_model, to_sentence_transformer

    with pytest.raises(Stop):
        to_sentence_transformer()
    with pytest.raises(Stop):
        mteb_model()
    with pytest.raises(Stop):
        to_sentence_transformer("smollm2-135m-best", batch_size=3)
    default = resolve_config().encoder_config()
    assert loads[:2] == [default, default]
    assert loads[2] == resolve_config("smollm2-135m-best", {"batch_size": 3}).encoder_config()


@pytest.mark.packaged
def test_encoder_with_nothing_named_uses_the_default_config():
    from tpembed import Encoder

    assert Encoder(device="cpu").config == resolve_config(None, {"device": "cpu"}).encoder_config()


# --------------------------------------------------------------------------- the vectors are the library's


@pytest.mark.packaged
def test_encode_by_name_gives_the_librarys_vectors_for_that_config(tmp_path):
    from tpembed import Encoder
    from tpembed.models import load_checked

    sentences = ["A man is playing a guitar.", "The stock market fell sharply."]
    out = tmp_path / "v.npy"
    result = CliRunner().invoke(app, ["encode", "--name", "smollm2-135m-best", "--device", "cpu", "-q", "-o", str(out),
                                      *sentences])
    assert result.exit_code == 0, result.output
    config = resolve_config("smollm2-135m-best", {"device": "cpu"}).encoder_config()
    want = Encoder(load_checked(config, progress=False), config=config).encode(sentences)
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_encode_from_a_config_file_with_set_and_options_gives_the_librarys_vectors(tiny_folder, tmp_path):
    from tpembed import Encoder
    from tpembed.models import load_checked

    path = tmp_path / "tiny.yaml"
    entry = {"model_name_or_path": str(tiny_folder), "device": "cpu", "tp_starting_index": 1, "tp_exiting_index": 2}
    path.write_text(yaml.safe_dump({"default_config": "tiny", "models": {"tiny": entry}}))
    sentences = ["a man is playing a guitar .", "hi"]
    out = tmp_path / "v.npy"
    args = ["encode", "--config", str(path), "--set", "output_layer=2", "--tp-exiting-index", "3", "-q", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, *sentences])
    assert result.exit_code == 0, result.output
    config = resolve_config(path, {"output_layer": 2, "tp_exiting_index": 3}).encoder_config()
    want = Encoder(load_checked(config, progress=False), config=config).encode(sentences)
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
