"""What several commands share: the one config source (:func:`config_source`), one-line user errors, output-path checks."""

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

from ..config import (
    EncoderConfig,
    RunConfig,
    default_config_name,
    default_config_path,
    describe_entry,
    explain_errors,
    load_config_file,
    parse_overrides,
    resolve_config,
)
from ..embedding_cache import CacheError
from ..model_files import quick_num_layers
from ..numbering import check_numbering
from ._app import SETTINGS_PANEL, SOURCE_PANEL

# Errors a user can cause (bad values, missing or unwritable files, a damaged cache): one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ValidationError, CacheError)


def fail(message: object) -> typing.NoReturn:
    """Print ``error: message`` to stderr, as one line, and exit with status 2 (no traceback)."""
    if isinstance(message, ValidationError):
        message = explain_errors(message)
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the user errors raised inside the block into ``error: ...`` and exit status 2."""
    try:
        yield
    except USER_ERRORS as err:
        fail(err)


def _option_type(annotation: Any) -> type:
    """CLI type of a config field: ints stay ints, bools are --x/--no-x flags, everything else (lists
    as "a,b") is passed as text to pydantic."""
    if annotation is bool:
        return bool
    args = typing.get_args(annotation)
    is_list = any(typing.get_origin(a) is list for a in args)
    return int if annotation is int or (int in args and str not in args and not is_list) else str


def _metavar(annotation: Any, kind: type) -> str:
    """What an option's value looks like in the help: the choices of a Literal, N, X, else TEXT."""
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(typing.get_args(annotation))
    if kind is int:
        return "N"
    args = typing.get_args(annotation) or (annotation,)
    if float in args and str not in args:
        return "X"
    if int in args and any(typing.get_origin(a) is list for a in args):
        return "N[,N...]"
    return "TEXT"


def _field_options(fields: dict[str, Any]) -> list[inspect.Parameter]:
    """One keyword-only ``--option`` (default None: not given) per pydantic field, in the settings panel."""
    params = []
    for name, field in fields.items():
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()
        help_text = field.description or ""
        kind = _option_type(field.annotation)
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:
            option = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False,
                                  rich_help_panel=SETTINGS_PANEL)
        else:
            option = typer.Option(flag, help=help_text, show_default=False, rich_help_panel=SETTINGS_PANEL,
                                  metavar=_metavar(field.annotation, kind) if not choices else "|".join(choices))
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Optional[kind], option],
            )
        )
    return params


def _own_parameters(func: Any, drop: set[str]) -> list[inspect.Parameter]:
    """The command's own parameters, annotations resolved, all keyword-only (typer orders them as listed)."""
    signature = inspect.signature(func)
    # resolve the string annotations (PEP 563) here: typer would see the wrapper's, without the
    # Annotated option metadata (help, short names, bounds)
    hints = typing.get_type_hints(func, include_extras=True)
    return [
        p.replace(annotation=hints[p.name], kind=inspect.Parameter.KEYWORD_ONLY)
        for p in signature.parameters.values()
        if p.name not in drop
    ]


# --------------------------------------------------------------------------- the one config source

DEFAULT_CONFIG = default_config_name()
DEFAULT_HELP = f"the packaged default config {DEFAULT_CONFIG}"
# the parameters config_source adds (internal names, so they never clash with a command's own)
_NAME, _FILE, _SET = "source_name", "source_file", "source_set"
# what config_source hands the command, when it declares them
_HANDED = ("run_config", "run_configs", "config_name", "config_file")


def _is_yaml(value: str) -> bool:
    return Path(value).suffix.lower() in (".yaml", ".yml")


def _resolve_one(
    name: str | None, config_file: Path | None, overrides: dict[str, Any]
) -> tuple[RunConfig, str | None, Path | None]:
    """(config, entry name, file it came from) for NAME / --config FILE / overrides, by resolve_config.

    The entry name is None when no named entry was used (a ``--model`` without a config: the
    settings are EncoderConfig's defaults plus the options); the file is None then too.
    """
    if config_file is None and name is not None and _is_yaml(name):
        config_file, name = Path(name), None  # NAME may be a YAML file, as in Python
    if config_file is not None:
        config = resolve_config(config_file, overrides, name=name)
        return config, name or load_config_file(config_file).default_config, config_file
    config = resolve_config(name, overrides)
    if name is None and ("model" in overrides or "model_name_or_path" in overrides):
        return config, None, None
    return config, name or DEFAULT_CONFIG, default_config_path()


def _config_names(config_file: Path | None) -> set[str]:
    """The entry names NAME may take (of --config FILE, else the packaged ones); none when the file is unreadable."""
    try:
        return set(load_config_file(config_file or default_config_path()).models)
    except (OSError, ValueError):
        return set()


def _check_not_a_config(command: str, what: str, values: list[str] | None, config_file: Path | None) -> None:
    """A first positional value of an ``--name`` command that is a config name (or a YAML config file)
    is a trap (``tpembed encode smollm2-135m-best "A man..."`` would embed the name): one error line."""
    if not values:
        return
    first = str(values[0])
    if what == "input" and Path(first).expanduser().exists() and not _is_yaml(first):
        return  # an existing corpus file or folder is an input whatever its name
    is_file = _is_yaml(first) and Path(first).expanduser().is_file()
    if not is_file and first not in _config_names(config_file):
        return
    kind = "a YAML config file" if is_file else "a config name"
    rest = '"A man is playing a guitar."' if what == "sentence" else "corpus.jsonl -o OUT"
    spelled = f"--config {first}" if is_file else f"--name {first}"
    escape = "; to embed that text itself, give --name explicitly" if what == "sentence" else ""
    raise ValueError(
        f"{first!r} is {kind}, not {'a sentence' if what == 'sentence' else 'an input file'}: {command} takes its "
        f"config as {spelled.split()[0]} (tpembed {command} {spelled} {rest}){escape}"
    )


def _check_layers_quickly(config: RunConfig) -> None:
    """The layer numbers against the layer count the model's files give without torch (a GGUF header,
    a config.json): ``--set output_layer=999`` fails in a second, not after torch's import. Where the
    count cannot be read so, nothing is checked here (the full check before loading still runs)."""
    num_layers = quick_num_layers(config.model)
    if num_layers is not None:
        check_numbering(config, num_layers)


def config_source(
    names: typing.Literal["one", "many", "option"] = "one",
    *,
    run_options: bool = False,
    exclude: tuple[str, ...] = (),
    positional: str | None = None,
    quick_layer_check: bool = True,
):
    """Give a command the one way to name its settings, and hand it the resolved config(s).

    Every command that builds an Encoder is declared with it, so they all take the same source:

    * a config NAME (``tpembed configs`` lists them; a ``.yaml`` path also works): a positional
      argument (``names="one"``), several positional NAMEs (``names="many"``, for ``serve``), or
      a ``--name NAME`` option (``names="option"``, for commands whose positional arguments are
      something else: ``encode``'s sentences, ``embed``'s inputs);
    * ``--config FILE``: a YAML file of named configs (NAME picks the entry, else its default_config);
    * ``--set key=value`` (repeatable): any EncoderConfig or RunConfig key, values parsed as YAML;
    * one ``--option`` per EncoderConfig field (``--tp-exiting-index 5``), and with ``run_options``
      also RunConfig's own fields (``--mode``, ``--task-set``).

    Nothing named means the packaged default config (:func:`tpembed.config.default_config_name`),
    except that a ``--model`` without a config starts from EncoderConfig's defaults (the default
    config's layers belong to its own model). The named entry is overridden by ``--set``, and
    ``--set`` by the options. Resolution is :func:`tpembed.config.resolve_config`; any problem (an
    unknown name lists the names, a file that is not YAML names the file, a bad value) is one
    ``error:`` line and exit status 2.

    The decorated command declares the parameters it wants handed, which do not become options:

    * ``run_config: RunConfig`` (``names="one"`` / ``"option"``): the resolved config (call
      ``.encoder_config()`` for the Encoder's settings without mode / task_set);
    * ``run_configs: dict[str, RunConfig]`` (``names="many"``): served name -> config, in the
      order named (nothing named: the default entry; a ``--model`` without a name: the model);
    * ``config_name: str | None`` (``"one"`` / ``"option"``): the entry used (None: no named entry);
    * ``config_file: Path | None`` (``"one"`` / ``"option"``): the YAML file it came from.

    ``positional`` (``names="option"``): the command's positional list (sentences, inputs); when
    ``--name`` is not given and its first value is a config name, that is one ``error:`` line
    naming ``--name`` (else ``tpembed encode smollm2-135m-best "..."`` would embed the name).

    ``quick_layer_check``: check the config's layer numbers against the model's files right away,
    before torch is imported (:func:`_check_layers_quickly`); off for the tuners, whose own options
    replace those numbers.

    ``exclude``: fields that get no ``--option`` because the command sets them from options of its
    own (the tuners' lists of values); the config (NAME, --config, --set) still names them.

    The command's help gets a line naming the default config.
    """
    if names not in ("one", "many", "option"):
        raise ValueError(f"names must be one, many or option, got {names!r}")
    extra_fields = (
        {k: f for k, f in RunConfig.model_fields.items() if k not in EncoderConfig.model_fields} if run_options else {}
    )
    option_fields = {k: f for k, f in {**EncoderConfig.model_fields, **extra_fields}.items() if k not in exclude}

    def decorate(func):
        wanted = set(inspect.signature(func).parameters)
        handed = "run_configs" if names == "many" else "run_config"
        if handed not in wanted:
            raise TypeError(f"{func.__name__} must declare {handed!r} to receive the resolved config")
        own = _own_parameters(func, set(_HANDED))
        clash = {p.name for p in own} & (set(option_fields) | {_NAME, _FILE, _SET})
        if clash:
            raise TypeError(f"{func.__name__} declares {sorted(clash)}, which config_source adds")

        name_help = (
            "named config(s) to serve (request 'model' = a name): an entry of tpembed configs or of --config"
            if names == "many"
            else "named config: an entry of tpembed configs or of --config (a .yaml path also works)"
        ) + f"; default: {DEFAULT_HELP}"
        if names == "one":
            name_param = Annotated[Optional[str], typer.Argument(metavar="NAME", help=name_help, show_default=False)]
        elif names == "many":
            name_param = Annotated[
                Optional[list[str]], typer.Argument(metavar="NAME...", help=name_help, show_default=False)
            ]
        else:
            name_param = Annotated[
                Optional[str],
                typer.Option("--name", metavar="NAME", help=name_help, show_default=False, rich_help_panel=SOURCE_PANEL),
            ]
        source = [
            inspect.Parameter(_NAME, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=name_param),
            inspect.Parameter(
                _FILE,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    Optional[Path],
                    typer.Option(
                        "--config", metavar="FILE", show_default=False, rich_help_panel=SOURCE_PANEL,
                        help="YAML file of named configs (NAME picks the entry, else its default_config; "
                        "default: the ones shipped with tpembed)",
                    ),
                ],
            ),
            inspect.Parameter(
                _SET,
                inspect.Parameter.KEYWORD_ONLY,
                default=[],
                annotation=Annotated[
                    list[str],
                    typer.Option(
                        "--set", metavar="KEY=VALUE", show_default=False, rich_help_panel=SOURCE_PANEL,
                        help="override a key of the config (repeatable): --set tp_exiting_index=5",
                    ),
                ],
            ),
        ]
        # positional NAME(s) first, then the command's own parameters, then --config, --set, the options
        params = (source[:1] if names != "option" else []) + own + (source if names == "option" else source[1:])
        params += _field_options(option_fields)

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            given = kwargs.pop(_NAME)
            config_file = kwargs.pop(_FILE)
            pairs = kwargs.pop(_SET) or []
            options = {k: kwargs.pop(k) for k in option_fields if kwargs.get(k) is not None}
            for k in option_fields:
                kwargs.pop(k, None)
            with user_errors():
                if names == "option" and positional is not None and given is None:
                    what = "sentence" if positional == "sentences" else "input"
                    _check_not_a_config(func.__name__, what, kwargs.get(positional), config_file)
                overrides = {**parse_overrides(pairs), **options}
                if names == "many":
                    served: dict[str, RunConfig] = {}
                    for name in given or [None]:
                        config, entry, _ = _resolve_one(name, config_file, overrides)
                        key = entry or config.model
                        if key in served:
                            raise ValueError(f"a config is named twice: {key}")
                        served[key] = config
                        if quick_layer_check:
                            _check_layers_quickly(config)
                    kwargs["run_configs"] = served
                else:
                    config, entry, path = _resolve_one(given, config_file, overrides)
                    if quick_layer_check:
                        _check_layers_quickly(config)
                    kwargs["run_config"] = config
                    if "config_name" in wanted:
                        kwargs["config_name"] = entry
                    if "config_file" in wanted:
                        kwargs["config_file"] = path
            return func(**kwargs)

        doc = inspect.cleandoc(func.__doc__ or "")
        name_word = "--name NAME" if names == "option" else "NAME"
        wrapper.__doc__ = (
            f"{doc}\n\nSettings: {name_word}, --config FILE, --set key=value and the options below (options win "
            f"over --set, --set over the named entry); with nothing named, {DEFAULT_HELP}."
        )
        wrapper.__signature__ = inspect.signature(func).replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def describe_config(name: str | None, config: RunConfig) -> str:
    """``config smollm2-135m-tp: smollm2-135m, TP [1, 7), output -1, prompteol`` (what a command used)."""
    entry = describe_entry(config)
    label = f"config {name}" if name else "settings (no named config)"
    layers = entry["layers"] if entry["plan"] == "tp" else f"vanilla, {entry['layers']}"
    return f"{label}: {entry['model']}, {layers}, prompt {entry['prompt']}"


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
