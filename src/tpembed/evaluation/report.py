"""Paper-style result tables and JSON result files."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .data import STS_TASKS, TASKS, TRANSFER_TASKS

Kind = Literal["sts", "transfer"]

# Paper column order; the dev split is shown next to STS-B when it was run.
_ORDER: dict[str, tuple[str, ...]] = {
    "sts": STS_TASKS[:5] + ("STSBenchmark", "STSBenchmark-dev", "SICKRelatedness"),
    "transfer": TRANSFER_TASKS,
}
_AVG_KEY = {"sts": "STSAvg", "transfer": "TransferAvg"}


def _columns(scores: Mapping[str, float], kind: Kind) -> tuple[list[str], list[float]]:
    if kind not in _ORDER:
        raise ValueError(f"kind must be 'sts' or 'transfer', got {kind!r}")
    tasks = [t for t in _ORDER[kind] if t in scores]
    if not tasks:
        raise ValueError(f"no {kind} scores to format (got keys: {', '.join(scores) or 'none'})")
    values = [float(scores[t]) for t in tasks]
    avg = scores.get(_AVG_KEY[kind])
    avg = float(np.mean(values)) if avg is None else float(avg)
    return [TASKS[t].display for t in tasks] + ["Avg."], values + [avg]


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def format_table(scores: Mapping[str, float], kind: Kind = "sts") -> str:
    """Plain-text box table: tasks as columns in the paper's order, then Avg. (2 decimals)."""
    return box_table(*_columns(scores, kind))


def box_table(heads: Sequence[str], values: Sequence[float]) -> str:
    """One row of scores under their column names, in the paper tables' plain-text box (2 decimals)."""
    cells = [_fmt(v) for v in values]
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    row = lambda xs: "|" + "|".join(f" {x:>{w}} " for x, w in zip(xs, widths)) + "|"  # noqa: E731
    return "\n".join([rule, row(heads), rule, row(cells), rule])


def to_markdown(scores: Mapping[str, float]) -> str:
    """Markdown table(s) for whichever of the STS / transfer results are present."""
    parts = []
    for kind in ("sts", "transfer"):
        try:
            heads, values = _columns(scores, kind)  # type: ignore[arg-type]
        except ValueError:
            continue
        parts.append("| " + " | ".join(heads) + " |\n"
                     + "|" + "|".join("---:" for _ in heads) + "|\n"
                     + "| " + " | ".join(_fmt(v) for v in values) + " |")
    if not parts:
        raise ValueError("no STS or transfer scores to format")
    return "\n\n".join(parts) + "\n"


def library_versions() -> dict[str, str]:
    """Versions of python, numpy, scipy, scikit-learn, and (when installed) torch,
    transformers and tpembed, read via importlib.metadata (nothing heavy is imported)."""
    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "scikit-learn", "torch", "transformers", "tpembed"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON values: numpy scalars/arrays and tuples become lists and numbers, NaN null."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def write_json(path: str | os.PathLike[str], scores: Mapping[str, Any],
               details: Mapping[str, Any], config: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"scores", "details", "config", **extra}`` as indented JSON; returns the path.

    ``extra`` carries run identity (model, library versions, seed, wall time, ...);
    it may not reuse the keys scores/details/config. NaN is written as null.
    """
    extra = dict(extra or {})
    clash = {"scores", "details", "config"} & set(extra)
    if clash:
        raise ValueError(f"extra may not override {sorted(clash)}")
    doc = {"scores": scores, "details": details, "config": config, **extra}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n",
                   encoding="utf-8")
    tmp.replace(out)  # atomic: a crash never leaves a half-written result file
    return out
