"""``tpembed sweep``: TP exit layer x output layer on STS-B dev, with heat-map and best.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app
from ._common import check_output_folder, user_errors
from .evaluate import CacheOption, DataOption, LimitOption, QuietOption


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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="sentences per forward pass")] = 32,
    pst_init: Annotated[str, typer.Option("--pst-init", help="gaussian | zeros")] = "gaussian",
    seed: Annotated[int, typer.Option("--seed", help="seed of the <PST> embedding")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    limit: LimitOption = None,
    then_test: Annotated[bool, typer.Option("--then-test", help="run the best cell on the 7 STS test tasks")] = False,
    cache: CacheOption = True,
    quiet: QuietOption = False,
) -> None:
    """Search TP exit layer x output layer on STS-B dev; write heatmap.png, grid.csv and best.yaml."""
    from ..evaluation import ensure_senteval, tasks_for

    with user_errors():
        # the checks that need no torch first (an offline first run fails in about a second)
        check_output_folder(out, "grid.csv")
        tasks = tasks_for("stsb", "dev") + (tasks_for("sts", "test") if then_test else [])
        data = ensure_senteval(data, tasks, progress=not quiet)
        from ..evaluation.pipeline import print_tables, run_evaluation
        from ..sweep import (format_grid, load_for_sweep, parse_layers, run_sweep, write_best_yaml, write_grid,
                             write_heatmap)

        exit_layers = parse_layers(exits) if exits else None
        output_layers = parse_layers(outputs) if outputs else None
        loaded = load_for_sweep(
            model, start, exit_layers, output_layers, device=device, dtype=dtype, progress=not quiet
        )  # kept for --then-test
        result = run_sweep(
            loaded,
            prompt,
            data_dir=data,
            tp_starting_index=start,
            exits=exit_layers,
            outputs=output_layers,
            limit=limit,
            use_cache=cache,
            progress=not quiet,
            batch_size=batch_size,
            pst_init=pst_init,
            seed=seed,
            device=device,
            dtype=dtype,
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
