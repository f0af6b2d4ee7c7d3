"""Preparing a run (checks, plan, resume) and finishing it (rejects, manifest): shared by the engines."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EncoderConfig
from .plan import Shard, check_resume, plan_shards, run_settings, write_json_atomic
from .readers import Columns, check_columns, find_inputs
from .writer import check_output_dir, is_done, manifest, merge_rejects, remove_leftovers, shard_counts

SETTINGS_FILE = "run.json"
MANIFEST_FILE = "manifest.json"


@dataclass
class PreparedRun:
    """A checked, planned run: where it writes, what it reads, which shards exist."""

    out: Path
    files: list[Path]
    columns: Columns
    shards: list[Shard]
    settings: dict[str, Any]
    keep_text: bool
    resumed: int = 0  # shards already done by an earlier run
    started: float = field(default_factory=time.time)

    def todo(self) -> list[Shard]:
        return [s for s in self.shards if not is_done(self.out, s)]

    def counts(self) -> list[dict[str, int]]:
        """Counts of every shard, read back from the output (all must be done)."""
        missing = [s.name for s in self.shards if not is_done(self.out, s)]
        if missing:
            raise RuntimeError(f"{len(missing)} shards were not written ({', '.join(missing[:3])} ...)")
        return [shard_counts(self.out, s) for s in self.shards]


def check_run(
    inputs: list[str | os.PathLike[str]], output: str | os.PathLike[str], config: EncoderConfig, columns: Columns,
    rows_per_shard: int, keep_text: bool,
) -> tuple[Path, list[Path], dict[str, Any]]:
    """The checks that need no model and no full read: inputs, columns, output folder, resumable settings."""
    if rows_per_shard <= 0:
        raise ValueError(f"rows per shard must be positive, got {rows_per_shard}")
    if not inputs:
        raise ValueError("no input given")
    files = find_inputs(list(inputs))
    for path in files:
        check_columns(path, columns)
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} is a file; give a folder")
    settings = run_settings(config, files, columns, rows_per_shard, keep_text)
    check_resume(out / SETTINGS_FILE, settings, config)
    return out, files, settings


def prepare_run(
    inputs: list[str | os.PathLike[str]], output: str | os.PathLike[str], config: EncoderConfig, columns: Columns,
    rows_per_shard: int, keep_text: bool,
) -> PreparedRun:
    """Check everything, plan the shards, record the settings (first run) and see what is done."""
    out, files, settings = check_run(inputs, output, config, columns, rows_per_shard, keep_text)
    check_output_dir(out)
    if not (out / SETTINGS_FILE).exists():
        write_json_atomic(out / SETTINGS_FILE, settings)
    shards = plan_shards(files, rows_per_shard)
    run = PreparedRun(out, files, columns, shards, settings, keep_text)
    run.resumed = len(shards) - len(run.todo())
    return run


def finish_run(run: PreparedRun, counts: list[dict[str, int]], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge the rejects and write ``manifest.json`` (last: its presence means the run is complete)."""
    from ..evaluation.report import library_versions

    merge_rejects(run.out, run.shards)
    remove_leftovers(run.out)
    previous = run.out / MANIFEST_FILE
    if not extra.get("model") and previous.exists():  # nothing left to embed: the model of the earlier run
        extra = {**extra, "model": json.loads(previous.read_text(encoding="utf-8")).get("model", {})}
    wall = time.time() - run.started
    data = manifest(run.out, run.shards, counts, {
        **extra,
        "settings": run.settings,
        "shards_resumed": run.resumed,
        "wall_seconds": round(wall, 3),
        "versions": library_versions(),
    })
    write_json_atomic(run.out / MANIFEST_FILE, data)
    return data
