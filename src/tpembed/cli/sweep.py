"""``tpembed sweep``: TP exit layer x output layer on STS-B dev, with heat-map and best.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import check_output_folder, config_source, user_errors
from .evaluate import CacheOption, DataOption, LimitOption, QuietOption

# the fields the grid sets itself (from --start, --exits, --outputs)
SWEPT = ("use_which_plan", "tp_starting_index", "tp_exiting_index", "output_layer")


@app.command()
@config_source("one", quick_layer_check=False, exclude=tuple(f for f in SWEPT if f != "tp_starting_index"))  # --tp-starting-index = --start
def sweep(
    prompt: Annotated[
        Optional[str], typer.Option("--prompt", help="prompteol | metaeol | cot | ke (= --prompt-method)")
    ] = None,
    data: DataOption = None,
    start: Annotated[
        Optional[int],
        typer.Option("--start", help="tp_starting_index of every TP row (default: the config's when it is a TP config, else 1)"),
    ] = None,
    exits: Annotated[
        Optional[str], typer.Option("--exits", help="TP exit layers, a..b inclusive or a,b,c (default: start+1..start+8)")
    ] = None,
    outputs: Annotated[
        Optional[str],
        typer.Option(
            "--outputs",
            help="output layers, a..b or a,b,c; negatives count from the end (default: upper half of the layers)",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="folder for heatmap.png, grid.csv, grid.json, best.yaml")] = Path(
        "sweep"
    ),
    name: Annotated[Optional[str], typer.Option("--name", help="entry name prefix in best.yaml (default: <model>-sweep)")] = None,
    limit: LimitOption = None,
    then_test: Annotated[bool, typer.Option("--then-test", help="run the best cell on the 7 STS test tasks")] = False,
    cache: CacheOption = True,
    quiet: QuietOption = False,
    run_config: Any = None,
) -> None:
    """Search TP exit layer x output layer on STS-B dev; write heatmap.png, grid.csv and best.yaml.

    The grid sets use_which_plan, tp_exiting_index and output_layer; every other setting is the config's.
    """
    from ..evaluation import ensure_senteval, tasks_for

    with user_errors():
        # the checks that need no torch first (an offline first run fails in about a second)
        check_output_folder(out, "grid.csv")
        tasks = tasks_for("stsb", "dev") + (tasks_for("sts", "test") if then_test else [])
        data = ensure_senteval(data, tasks, progress=not quiet)
        from ..config import EncoderConfig
        from ..evaluation.pipeline import print_tables, run_evaluation
        from ..tuning import format_grid, load_for_sweep, parse_layers, run_sweep, write_best_yaml, write_grid, write_heatmap

        config = run_config.encoder_config()
        if prompt is not None:
            config = EncoderConfig(**{**config.model_dump(), "prompt_method": prompt})
        if start is None:  # a vanilla config's indices are placeholders
            start = config.tp_starting_index if config.use_which_plan == "tp" else 1
        exit_layers = parse_layers(exits) if exits else None
        output_layers = parse_layers(outputs) if outputs else None
        loaded = load_for_sweep(config, start, exit_layers, output_layers, progress=not quiet)  # kept for --then-test
        settings = config.model_dump(exclude={"model", "prompt_method", *SWEPT})
        result = run_sweep(
            loaded, config.prompt_method, data_dir=data, tp_starting_index=start, exits=exit_layers,
            outputs=output_layers, limit=limit, use_cache=cache, progress=not quiet, **settings,
        )
    typer.echo(format_grid(result))
    with user_errors():
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
        with user_errors():
            test = run_evaluation(
                result.run_config(result.best()), data, name=entry, limit=limit, use_cache=cache, loaded=loaded,
                progress=not quiet,
            )
        typer.echo(print_tables(test["scores"]))
