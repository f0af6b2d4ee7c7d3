"""The ``tpembed`` command line (typer)."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from pydantic import ValidationError

from .config import EncoderConfig

app = typer.Typer(help="Sentence embeddings from decoder-only LLMs with Token Prepending.", no_args_is_help=True)


def _option_type(annotation: Any) -> type:
    """CLI type of a config field: ints stay ints, everything else is passed as text to pydantic."""
    args = typing.get_args(annotation)
    return int if annotation is int or (int in args and str not in args) else str


def encoder_options(func):
    """Give a command one ``--option`` per EncoderConfig field; set ones arrive as ``settings``.

    The options are derived from the config model, so the CLI, YAML and Python keys never drift.
    """
    signature = inspect.signature(func)
    # resolve the string annotations (PEP 563) here: typer would see the wrapper's, without the
    # Annotated option metadata (help, short names, bounds)
    hints = typing.get_type_hints(func, include_extras=True)
    params = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values() if p.name != "settings"]
    for name, field in EncoderConfig.model_fields.items():
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()
        help_text = field.description or ""
        if choices:
            help_text += f" (one of: {', '.join(choices)})"
        help_text += f" (default: {field.default})"
        option = typer.Option(f"--{name.replace('_', '-')}", help=help_text, show_default=False)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[_option_type(field.annotation)], option]
            )
        )

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        settings = {k: kwargs.pop(k) for k in EncoderConfig.model_fields if kwargs.get(k) is not None}
        for k in EncoderConfig.model_fields:
            kwargs.pop(k, None)
        return func(**kwargs, settings=settings)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def build_config(settings: dict[str, Any]) -> EncoderConfig:
    """Validate settings into an EncoderConfig, turning pydantic errors into a clean CLI error."""
    try:
        return EncoderConfig(**settings)
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from None


@app.command()
@encoder_options
def encode(
    sentences: Annotated[list[str], typer.Argument(help="sentences to embed")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="save the embeddings as .npy")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the embeddings")] = False,
    settings: dict[str, Any] | None = None,
) -> None:
    """Embed sentences; print the shape and the pairwise cosine similarity matrix."""
    from .encoder import Encoder

    config = build_config(settings or {})
    try:
        encoder = Encoder(config=config)
        vectors = encoder.encode(sentences, normalize_embeddings=normalize)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"embeddings: {vectors.shape[0]} x {vectors.shape[1]} (float32)")
    sim = encoder.similarity(vectors, vectors)
    width = max(len(str(len(sentences))), 2)
    typer.echo("cosine similarity:")
    typer.echo(" " * (width + 1) + " ".join(f"{j:>6d}" for j in range(len(sentences))))
    for i, row in enumerate(sim):
        typer.echo(f"{i:>{width}d} " + " ".join(f"{x:6.3f}" for x in row) + f"  {sentences[i][:60]}")
    if output is not None:
        np.save(output, vectors)
        typer.echo(f"saved {output}")


def _report(result: dict[str, Any], output: Path | None) -> None:
    from .run import print_tables

    typer.echo(print_tables(result["scores"]))
    meta = result["meta"]
    typer.echo(
        f"{meta['n_unique_sentences']} distinct sentences, encoded in {meta['encode_seconds']:.1f} s; "
        f"wall time {result['wall_seconds']:.1f} s"
    )
    if output is not None:
        typer.echo(f"results written to {output}")


def _evaluate(
    run_config: Any,
    data: Path | None,
    name: str | None,
    limit: int | None,
    output: Path | None,
    cache: bool,
    probe_jobs: int,
) -> None:
    from .run import run_evaluation

    try:
        result = run_evaluation(
            run_config, data, name=name, limit=limit, output=output, use_cache=cache, probe_jobs=probe_jobs
        )
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    _report(result, output)


DataOption = Annotated[
    Optional[Path], typer.Option("--data", help="SentEval data folder (default: $TPEMBED_DATA or ../shared/senteval)")
]
LimitOption = Annotated[Optional[int], typer.Option("--limit", help="first N pairs/examples per task (smoke runs)")]
OutputOption = Annotated[Optional[Path], typer.Option("--output", "-o", help="write results as JSON")]
CacheOption = Annotated[bool, typer.Option("--cache/--no-cache", help="reuse embeddings cached on disk")]
ProbeJobsOption = Annotated[
    int,
    typer.Option(
        "--probe-jobs", min=1, help="worker processes for the transfer probe's C x fold fits (scores do not change)"
    ),
]


@app.command()
def run(
    name: Annotated[Optional[str], typer.Argument(help="entry of the config file (default: its default_config)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of named configs")] = None,
    data: DataOption = None,
    set_: Annotated[list[str], typer.Option("--set", help="override a key: --set tp_exiting_index=5")] = [],  # noqa: B006
    limit: LimitOption = None,
    output: OutputOption = None,
    cache: CacheOption = True,
    probe_jobs: ProbeJobsOption = 1,
) -> None:
    """Evaluate a named configuration (the paper's interface) and print the paper-style table."""
    from .config import default_config_path, load_config_file, parse_overrides, resolve_run_config

    path = config or default_config_path()
    try:
        run_config = resolve_run_config(path, name, parse_overrides(set_))
        gpu = load_config_file(path).gpu_config
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if gpu and gpu.cuda_visible_devices is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu.cuda_visible_devices  # as the paper's run.sh does
    _evaluate(run_config, data, name, limit, output, cache, probe_jobs)


@app.command("eval")
@encoder_options
def eval_(
    mode: Annotated[str, typer.Option(help="test | dev | fasttest")] = "test",
    task_set: Annotated[str, typer.Option(help="sts | transfer | full | stsb")] = "sts",
    data: DataOption = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    cache: CacheOption = True,
    probe_jobs: ProbeJobsOption = 1,
    settings: dict[str, Any] | None = None,
) -> None:
    """Evaluate encoder settings given as options (no YAML file needed)."""
    from .config import RunConfig

    try:
        run_config = RunConfig(**(settings or {}), mode=mode, task_set=task_set)
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from None
    _evaluate(run_config, data, None, limit, output, cache, probe_jobs)


@app.command()
def sweep(
    model: Annotated[str, typer.Option("--model", help="packaged name, .gguf file, HF folder or hub id")] = "smollm2-135m",
    prompt: Annotated[str, typer.Option("--prompt", help="prompteol | metaeol | cot | ke")] = "prompteol",
    data: DataOption = None,
    start: Annotated[int, typer.Option("--start", help="tp_starting_index of every TP row")] = 1,
    exits: Annotated[
        Optional[str], typer.Option("--exits", help="TP exit layers, a..b inclusive or a,b,c (default: start+1..start+8)")
    ] = None,
    outputs: Annotated[
        Optional[str], typer.Option("--outputs", help="output layers, a..b or a,b,c (default: upper half of the layers)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="folder for heatmap.png, grid.csv, grid.json, best.yaml")] = Path(
        "sweep"
    ),
    name: Annotated[Optional[str], typer.Option("--name", help="entry name prefix in best.yaml (default: <model>-sweep)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="sentences per forward pass")] = 32,
    pst_init: Annotated[str, typer.Option("--pst-init", help="gaussian | zeros")] = "gaussian",
    seed: Annotated[int, typer.Option("--seed", help="seed of the <PST> embedding")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    limit: LimitOption = None,
    then_test: Annotated[bool, typer.Option("--then-test", help="run the best cell on the 7 STS test tasks")] = False,
    cache: CacheOption = True,
) -> None:
    """Search TP exit layer x output layer on STS-B dev; write heatmap.png, grid.csv and best.yaml."""
    from .run import print_tables, run_evaluation
    from .models import load_model
    from .sweep import format_grid, parse_layers, run_sweep, write_best_yaml, write_grid, write_heatmap

    try:
        exit_layers = parse_layers(exits) if exits else None
        output_layers = parse_layers(outputs) if outputs else None
        loaded = load_model(model, device=device, dtype=dtype)
        result = run_sweep(
            loaded,
            prompt,
            data_dir=data,
            tp_starting_index=start,
            exits=exit_layers,
            outputs=output_layers,
            limit=limit,
            use_cache=cache,
            batch_size=batch_size,
            pst_init=pst_init,
            seed=seed,
            device=device,
            dtype=dtype,
        )
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_grid(result))
    csv_path, json_path = write_grid(result, out)
    png = write_heatmap(result, out / "heatmap.png")
    yaml_path, entry = write_best_yaml(result, out / "best.yaml", name)
    exit_layer, layer, score = result.best()
    plan = "vanilla" if exit_layer is None else f"TP [{result.tp_starting_index}, {exit_layer})"
    typer.echo(
        f"best on STS-B dev: {plan}, output layer {layer}: {score:.2f}\n"
        f"{len(result.scores)} rows x {len(result.outputs)} output layers from {result.encoded_rows} passes over "
        f"{result.n_sentences} sentences ({result.forward_passes} model forward calls; other rows came from the "
        f"cache); {result.seconds:.1f} s\n"
        f"wrote {png}, {csv_path}, {json_path}, {yaml_path} (tpembed run {entry} --config {yaml_path})"
    )
    if then_test:
        try:
            test = run_evaluation(
                result.run_config(result.best()), data, name=entry, limit=limit, use_cache=cache, loaded=loaded
            )
        except (ValueError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(print_tables(test["scores"]))


data_app = typer.Typer(help="SentEval data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    dest: Annotated[Path, typer.Argument(help="folder to download and unpack into")],
    url: Annotated[Optional[str], typer.Option(help="tarball URL (default: the SimCSE senteval.tar)")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="expected SHA-256 of the tarball")] = None,
) -> None:
    """Download the SentEval data the paper uses, unpack it and verify every task's counts."""
    from .evaluation import SENTEVAL_URL, DownloadError, download_senteval

    try:
        root = download_senteval(dest, url=url or SENTEVAL_URL, expected_sha256=sha256)
    except (DownloadError, ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"SentEval data ready in {root} (use --data {root})")


@app.callback()
def main() -> None:
    """tpembed: training-free sentence embeddings (PromptEOL, MetaEOL, CoT, KE) with Token Prepending."""


if __name__ == "__main__":
    app()
