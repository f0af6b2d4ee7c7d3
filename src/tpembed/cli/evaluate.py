"""``tpembed run`` / ``tpembed eval`` (one command, two names): evaluate a config on SentEval."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import check_output_file, config_source, user_errors

DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="SentEval data folder (default: $TPEMBED_DATA, else a copy found or downloaded once into "
        "$TPEMBED_CACHE/senteval; $TPEMBED_DATA_URL overrides the download's URL)",
    ),
]
ConfigFileOption = Annotated[
    Optional[Path], typer.Option("--config", help="YAML file of named configs (default: the ones shipped with tpembed)")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars (for scripts); results still print")]
LimitOption = Annotated[
    Optional[int],
    typer.Option("--limit", min=1, metavar="N", help="smoke runs: the first N pairs of each STS task (STS12-16 share "
                 "them across their subsets, 2 each at least), N examples per transfer split"),
]
OutputOption = Annotated[Optional[Path], typer.Option("--output", "-o", help="write results as JSON")]
CacheOption = Annotated[bool, typer.Option("--cache/--no-cache", help="reuse embeddings cached on disk")]
ProbeJobsOption = Annotated[
    int,
    typer.Option(
        "--probe-jobs", min=1, help="worker processes for the transfer probe's C x fold fits (scores do not change)"
    ),
]


def _report(result: dict[str, Any], output: Path | None, run_config: Any, name: str | None,
            limit: int | None) -> None:
    """The tables, each under what it measures, then where the vectors and the results came from and went."""
    from ..evaluation import format_table

    scores, meta = result["scores"], result["meta"]
    sliced = f", --limit {limit}: the first {limit} pairs/examples of each task" if limit else ""
    typer.echo(f"{name or run_config.model} on SentEval ({meta['mode']} mode{sliced})")
    for kind, what in (
        ("sts", "STS: Spearman correlation x100 of the cosine similarities with the gold scores"),
        ("transfer", f"Transfer: accuracy % of a logistic-regression probe ({meta['kfold']}-fold CV"
                     + (", validation accuracy" if meta["mode"] == "dev" else "") + ")"),
    ):
        try:
            table = format_table(scores, kind)  # type: ignore[arg-type]
        except ValueError:
            continue
        typer.echo(what)
        typer.echo(table)
    distinct, fresh = meta["n_unique_sentences"], meta.get("n_encoded_sentences", meta["n_unique_sentences"])
    if fresh == 0:
        how = "all from the embedding cache (--no-cache encodes them again)"
    elif fresh < distinct:
        how = f"{fresh} encoded in {meta['encode_seconds']:.1f} s, {distinct - fresh} from the embedding cache"
    else:
        how = f"encoded in {meta['encode_seconds']:.1f} s"
    typer.echo(f"{distinct} distinct sentences, {how}; wall time {result['wall_seconds']:.1f} s")
    if output is not None:
        typer.echo(f"results written to {output}")
    else:
        typer.echo("results not saved: add -o results.json to keep them (tpembed compare reads that file)")


def _evaluate(
    run_config: Any,
    data: Path | None,
    name: str | None,
    limit: int | None,
    output: Path | None,
    cache: bool,
    probe_jobs: int,
    quiet: bool,
) -> None:
    from ..evaluation import ensure_senteval, tasks_for

    with user_errors():
        # the checks that need no torch first (an offline first run fails in about a second)
        if output is not None:
            output = check_output_file(output)
        data = ensure_senteval(data, tasks_for(run_config.task_set, run_config.mode), progress=not quiet)
        from ..evaluation.pipeline import run_evaluation  # torch; checks the layers against the model's config, then loads

        result = run_evaluation(
            run_config, data, name=name, limit=limit, output=output, use_cache=cache, probe_jobs=probe_jobs,
            progress=not quiet,
        )
    _report(result, output, run_config, name, limit)


# one implementation, two names: `run NAME` is the paper's interface, `eval --option ...` reads as one
@app.command("eval")
@app.command("run")
@config_source("one", run_options=True)
def run(
    data: DataOption = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    cache: CacheOption = True,
    probe_jobs: ProbeJobsOption = 1,
    quiet: QuietOption = False,
    run_config: Any = None,
    config_name: str | None = None,
    config_file: Path | None = None,
) -> None:
    """Evaluate a config on SentEval and print the paper-style table (eval is the same command)."""
    from ..config import load_config_file

    if config_file is not None:
        with user_errors():
            gpu = load_config_file(config_file).gpu_config
        if gpu and gpu.cuda_visible_devices is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu.cuda_visible_devices  # as the paper's run.sh does
    _evaluate(run_config, data, config_name, limit, output, cache, probe_jobs, quiet)

