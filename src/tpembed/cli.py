"""The ``tpembed`` command line (typer)."""

from __future__ import annotations

import functools
import inspect
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
    params = [p for p in signature.parameters.values() if p.name != "settings"]
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


@app.callback()
def main() -> None:
    """tpembed: training-free sentence embeddings (PromptEOL, MetaEOL, CoT, KE) with Token Prepending."""


if __name__ == "__main__":
    app()
