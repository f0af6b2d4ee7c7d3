"""``tpembed mteb``: run MTEB tasks on a named config or on settings given as options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import encoder_options, fail, user_errors


@app.command("mteb")
@encoder_options
def mteb_(
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="comma-separated MTEB task names (STSBenchmark,SICK-R,...) or module:Class for your own task",
        ),
    ],
    name: Annotated[
        Optional[str],
        typer.Argument(help="entry of the config file; options below override it (default: options only)"),
    ] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of named configs")] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="override a key of NAME: --set tp_exiting_index=5")
    ] = [],  # noqa: B006
    query_template: Annotated[
        Optional[str], typer.Option("--query-template", help="template for queries (retrieval, reranking ...)")
    ] = None,
    document_template: Annotated[
        Optional[str], typer.Option("--document-template", help="template for documents / passages")
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="folder for MTEB's result JSON files (reused on reruns); default: none"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    settings: dict[str, Any] | None = None,
) -> None:
    """Evaluate on MTEB tasks (data from the Hugging Face hub) and print the main scores, paper-style."""
    from ..config import EncoderConfig, default_config_path, parse_overrides, resolve_run_config

    try:
        from ..integrations.mteb import TPEmbedMTEB, check_templates, format_scores, resolve_task, run_tasks
    except ImportError as err:
        fail(err)
    with user_errors():
        overrides = {**parse_overrides(set_), **(settings or {})}
        if name is not None:
            encoder_config = resolve_run_config(config or default_config_path(), name, overrides).encoder_config()
        else:
            encoder_config = EncoderConfig(**overrides)
        # everything that can be checked without the model first: a 7B load takes minutes
        templates = {k: v for k, v in (("query", query_template), ("document", document_template)) if v}
        check_templates(templates, use_tp=encoder_config.use_which_plan == "tp")
        if output is not None and output.exists() and not output.is_dir():
            raise ValueError(f"--output {str(output)!r} is a file; give a folder")
        task_list = [resolve_task(t) for t in tasks.split(",") if t.strip()]
        if not task_list:
            raise ValueError("--tasks names no task (e.g. --tasks STSBenchmark,SICK-R)")
        from ..encoder import Encoder
        from ..models import load_checked

        loaded = load_checked(encoder_config, progress=not quiet)
        model = TPEmbedMTEB(Encoder(loaded, config=encoder_config), templates)
        results = run_tasks(model, task_list, output_dir=output, show_progress_bar=not quiet)
    typer.echo(f"{model.mteb_model_meta.name} ({model.mteb_model_meta.experiment_name})")
    typer.echo(format_scores(results))
    if output is not None:
        typer.echo(f"MTEB results written under {output}")
