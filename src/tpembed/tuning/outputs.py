"""What both tuners write the same way: entry names, CSV tables and best.yaml (a config file `tpembed run` reads)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig, load_config_file


def short_model_name(model: str) -> str:
    """The model's short name for config entries: a .gguf file's stem, else the last path or hub-id part.

    Only a .gguf suffix is dropped: hub ids such as ``Qwen/Qwen2.5-0.5B-Instruct`` keep their dots.
    """
    name = Path(model).stem if model.endswith(".gguf") else Path(model.rstrip("/")).name
    return name or "model"


def entry_name(model: str, tuner: str) -> str:
    """The default best.yaml entry prefix: ``<short model name>-<tuner>`` (``-sweep``, ``-search``)."""
    return f"{short_model_name(model)}-{tuner}"


def yaml_entry(config: RunConfig) -> dict[str, Any]:
    """A RunConfig as a config-file entry in the paper's shape (``model_name_or_path`` first)."""
    data = config.model_dump(exclude_defaults=False)
    entry: dict[str, Any] = {"model_name_or_path": data.pop("model")}
    for key, value in data.items():
        if value is None or (key in ("device", "dtype") and value == "auto"):
            continue  # keep the file portable: let each machine choose its device
        entry[key] = value
    return entry


def write_config_file(path: Path, header: str, entries: Mapping[str, RunConfig], default: str) -> Path:
    """A config file of ``entries`` whose ``default_config`` is ``default``, under a comment ``header``.

    It is read back before returning, so it fails here rather than in the user's later ``tpembed run``.
    """
    document = {"default_config": default, "models": {name: yaml_entry(c) for name, c in entries.items()}}
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    load_config_file(path)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV table: ``header``, then ``rows``."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
