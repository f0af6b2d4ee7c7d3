"""The ``tpembed`` Typer application; each command lives in its own module of this package."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sentence embeddings from decoder-only LLMs with Token Prepending.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """tpembed: training-free sentence embeddings (PromptEOL, MetaEOL, CoT, KE) with Token Prepending."""
