"""``tpembed compare A B ...``: per-task scores and differences to the first system, each with a 95%
paired bootstrap confidence interval; writes compare.md, compare.json and compare.png."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import check_output_folder, user_errors
from .evaluate import CacheOption, DataOption, LimitOption, ProbeJobsOption, QuietOption


@app.command()
def compare(
    systems: Annotated[
        list[str],
        typer.Argument(
            metavar="SYSTEM...",
            help="a config name (tpembed configs), a YAML config file, or a result JSON of `tpembed run -o`; "
            "the first is the baseline the others are compared to",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for compare.md, compare.json, compare.png")] = Path(
        "compare"
    ),
    mode: Annotated[
        Optional[str], typer.Option("--mode", help="for configs: test, dev or fasttest (default: each config's)")
    ] = None,
    task_set: Annotated[
        Optional[str],
        typer.Option("--task-set", help="for configs: sts, transfer, full or stsb (default: each config's)"),
    ] = None,
    config_file: Annotated[
        Optional[Path], typer.Option("--config", metavar="FILE", help="YAML file the config names are looked up in")
    ] = None,
    set_pairs: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="override a key of every config compared (repeatable)"),
    ] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=1, help="bootstrap resamples")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed")] = 0,
    data: DataOption = None,
    limit: LimitOption = None,
    cache: CacheOption = True,
    probe_jobs: ProbeJobsOption = 1,
    quiet: QuietOption = False,
) -> None:
    """Compare systems on the same tasks: every STS score and every difference to the first system with a
    95% paired bootstrap CI over pairs (configs are evaluated; result JSONs are read, not re-encoded)."""
    from ..evaluation.bootstrap import DEFAULT_LEVEL

    with user_errors():
        from ..config import parse_overrides

        overrides: dict[str, Any] = parse_overrides(set_pairs or [])
        overrides.update({k: v for k, v in (("mode", mode), ("task_set", task_set)) if v is not None})
        check_output_folder(out, "compare.md")
        from ..evaluation.compare import check_sources, compare_systems, load_systems, to_markdown, write_comparison

        check_sources(systems, config_file, overrides)  # a missing file or unknown name: before any model loads
        loaded = load_systems(systems, data_dir=data, config_file=config_file, overrides=overrides, limit=limit,
                              use_cache=cache, progress=not quiet, probe_jobs=probe_jobs)
        comparison = compare_systems(loaded, n_resamples=resamples, seed=seed, level=DEFAULT_LEVEL)
        paths = write_comparison(comparison, out)
    typer.echo(to_markdown(comparison))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
