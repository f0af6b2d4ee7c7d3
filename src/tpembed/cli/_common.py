"""What several commands share: Encoder options, one-line user errors, output-path checks."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from ..embedding_cache import CacheError
from ..config import EncoderConfig

# Errors a user can cause (bad values, missing or unwritable files, a damaged cache): one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ValidationError, CacheError)


def fail(message: object) -> typing.NoReturn:
    """Print ``error: message`` to stderr and exit with status 2 (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the user errors raised inside the block into ``error: ...`` and exit status 2."""
    try:
        yield
    except USER_ERRORS as err:
        fail(err)


def _option_type(annotation: Any) -> type:
    """CLI type of a config field: ints stay ints, everything else (lists as "a,b") is passed as text to pydantic."""
    args = typing.get_args(annotation)
    is_list = any(typing.get_origin(a) is list for a in args)
    return int if annotation is int or (int in args and str not in args and not is_list) else str


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
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Optional[_option_type(field.annotation)], option],
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
        fail(err)


def check_output_file(path: Path, *, suffix: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be written; return the path that will be written.

    ``suffix`` is appended when missing (``np.save`` would do it silently). Missing parent folders
    are allowed (they are created when the file is written) as long as the nearest existing
    ancestor is a writable folder; nothing is created here.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder; give a file name")
    if suffix and path.suffix != suffix:
        path = path.with_name(path.name + suffix)
        if path.is_dir():
            raise ValueError(f"output {str(path)!r} is a folder; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise PermissionError(f"output {str(path)!r} is not writable")
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: {str(ancestor)!r} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {str(path)!r}: folder {str(ancestor)!r} is not writable")
    return path


def check_output_folder(out: Path, first_file: str) -> None:
    """Check, before any work, that folder ``out`` can take ``first_file`` (and the files beside it)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    check_output_file(out / first_file)
