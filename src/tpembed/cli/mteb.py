"""``tpembed mteb``: run MTEB tasks on a config (NAME, --config, --set, options)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import config_source, fail, user_errors


@app.command("mteb")
@config_source("one")
def mteb_(
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="comma-separated MTEB task names (STSBenchmark,SICK-R,...) or module:Class for your own task",
        ),
    ],
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
    run_config: Any = None,
) -> None:
    """Evaluate on MTEB tasks (data from the Hugging Face hub) and print the main scores, paper-style."""
    try:
        from ..integrations.mteb import TPEmbedMTEB, check_templates, format_scores, resolve_task, run_tasks
    except ImportError as err:
        fail(err)
    with user_errors():
        encoder_config = run_config.encoder_config()
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
