"""The work of one run: shards of input rows, and the settings that must match to resume a run.

A shard is a range of rows of one file (never across files), so any worker can read it on its
own; its number is its place in the run, so its output file name is the same on every rerun.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import EncoderConfig, free_settings
from ..identity import planned_identity
from .readers import Columns, count_rows, file_format

@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of ``path``; ``offset``: the byte where row ``start`` begins (line files)."""

    index: int
    path: str
    start: int
    stop: int
    offset: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_shards(files: list[Path], rows_per_shard: int) -> list[Shard]:
    """Cut every file into shards of ``rows_per_shard`` rows (the last one of a file may be shorter)."""
    if rows_per_shard <= 0:
        raise ValueError(f"rows per shard must be positive, got {rows_per_shard}")
    shards: list[Shard] = []
    for path in files:
        n, offsets = count_rows(path, rows_per_shard)
        for k, start in enumerate(range(0, n, rows_per_shard)):
            offset = offsets[k] if offsets else 0
            shards.append(Shard(len(shards), str(path), start, min(start + rows_per_shard, n), offset))
    return shards


def run_settings(
    config: EncoderConfig, files: list[Path], columns: Columns, rows_per_shard: int, keep_text: bool
) -> dict[str, Any]:
    """Everything that decides what a finished shard holds. A rerun must match it to resume.

    The vectors' side is the identity (model + every vector-changing setting): a run may resume
    with other free settings (batch size, device, prefix cache).
    """
    return {
        "identity": planned_identity(config),
        "inputs": [_file_identity(p) for p in files],
        "text_column": columns.text,
        "id_column": columns.id,
        "rows_per_shard": rows_per_shard,
        "keep_text": keep_text,
    }


def _legacy_settings(config: EncoderConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as releases before the identity wrote run.json (the settings minus the free ones,
    and the model's fingerprint), so their runs still resume."""
    from ..models import PACKAGED_MODELS, default_cache_dir, file_sha256, packaged_model_file

    path = Path(config.model).expanduser()
    if config.model in PACKAGED_MODELS or path.is_file():
        file = packaged_model_file(config.model, default_cache_dir()) if config.model in PACKAGED_MODELS else path
        model = "sha256:" + file_sha256(file, default_cache_dir())
    else:
        model = str(path.resolve()) if path.exists() else config.model
    legacy = {k: v for k, v in settings.items() if k != "identity"}
    free = set(free_settings())
    legacy.update(encoder={k: v for k, v in config.model_dump().items() if k not in free}, model=model)
    return legacy


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "format": file_format(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def check_resume(settings_file: Path, settings: dict[str, Any], config: EncoderConfig | None = None) -> bool:
    """True when ``settings_file`` exists and matches ``settings``; a mismatch is a ValueError.

    Returns False for a fresh output folder (the caller then writes the file). A file written
    before the identity existed matches when ``config`` gives the same legacy settings; it is then
    rewritten in today's form.
    """
    if not settings_file.exists():
        return False
    try:
        previous = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{settings_file} is unreadable ({err}); delete the output folder to start again") from None
    if previous == json.loads(json.dumps(settings)):
        return True
    if config is not None and "identity" not in previous and "encoder" in previous:
        legacy = json.loads(json.dumps(_legacy_settings(config, settings)))
        if previous == legacy:
            write_json_atomic(settings_file, settings)
            return True
        settings = legacy  # name what differs in the old file's own terms
    changed = ", ".join(_differences(previous, settings)) or "settings"
    raise ValueError(
        f"{settings_file.parent} holds a run with other settings ({changed} differ); resuming would mix "
        "vectors. Give another --output folder, or delete this one to start again"
    )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), json.loads(json.dumps(new.get(key)))
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, then rename it over ``path`` (readers never see half a file);
    a failed write removes the temporary file and names ``path``."""
    from .writer import write_atomic

    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
