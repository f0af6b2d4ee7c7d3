"""``tpembed compare``: several systems on the same tasks, each STS score and each difference to the
first system with a 95% paired bootstrap confidence interval (:mod:`.bootstrap`).

A system is a named config, a YAML config file (its default entry, or ``--config FILE`` + NAME), or a
result JSON that ``tpembed run -o`` wrote (or ``benchmarks/minilm.py``). Configs are evaluated
through :func:`~tpembed.evaluation.pipeline.run_evaluation` (the embedding cache makes a repeat
free); result JSONs are read as they are: their ``details`` carry every pair's cosine and gold
score, so nothing is re-encoded. Every system must cover the same tasks on the same pairs.

Transfer tasks are shown with their scores alone (no per-example predictions are kept, so no
interval). Outputs: :func:`to_markdown` (one table), :func:`write_chart` (PNG: per-task grouped bars
with CI whiskers, and the differences to the first system), :func:`write_comparison` (both plus
compare.json).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bootstrap import (DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval, PairedBootstrap,
                        percentile_interval, task_pairs)
from .data import STS_TASKS, TASKS, TRANSFER_TASKS
from .report import jsonable

_ORDER = (*STS_TASKS[:5], "STSBenchmark", "STSBenchmark-dev", "SICKRelatedness", *TRANSFER_TASKS)
AVG_ROW = "STSAvg"


@dataclass
class System:
    """One compared system: its scores and per-task details (as ``evaluate`` returns them)."""

    label: str
    source: str  # what was named: a config name, a YAML file or a result JSON
    kind: str  # "config" or "result"
    scores: dict[str, float]
    details: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # model name, limit, mode ... (for the JSON)

    @property
    def tasks(self) -> list[str]:
        return [t for t in self.details if t in self.scores]


# --------------------------------------------------------------------------- loading systems


def _is_yaml(arg: str) -> bool:
    return Path(arg).suffix.lower() in (".yaml", ".yml")


def _is_json(arg: str) -> bool:
    return Path(arg).suffix.lower() == ".json"


def load_result(path: str | os.PathLike[str], label: str | None = None) -> System:
    """A result JSON of ``tpembed run -o`` as a :class:`System` (ValueError when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {str(path)!r} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a JSON result file ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scores"), dict) or not isinstance(doc.get("details"), dict):
        raise ValueError(f"{str(path)!r} is not a result file of `tpembed run -o` (no scores/details)")
    scores = {k: (float("nan") if v is None else float(v)) for k, v in doc["scores"].items()}
    model = doc.get("model")
    info = {"path": str(path), "name": doc.get("name"),
            "model": model.get("name") if isinstance(model, dict) else model,
            "limit": (doc.get("meta") or {}).get("limit"), "mode": (doc.get("meta") or {}).get("mode")}
    return System(label or doc.get("name") or path.stem, str(path), "result", scores, doc["details"], info)


def resolve_system_config(arg: str, config_file: str | os.PathLike[str] | None = None,
                          overrides: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(RunConfig, label)`` for a named config or a YAML config file (ValueError / FileNotFoundError)."""
    from ..config import load_config_file, resolve_config

    if _is_yaml(arg):
        path = Path(arg)
        if not path.is_file():
            raise FileNotFoundError(f"config file {arg!r} does not exist")
        entry = load_config_file(path).default_config
        return resolve_config(path, overrides), entry or path.stem
    if config_file is not None:
        return resolve_config(Path(config_file), overrides, name=arg), arg
    return resolve_config(arg, overrides), arg


def check_sources(args: Sequence[str], config_file: str | os.PathLike[str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> None:
    """Fail fast, before any model loads: every result file exists and reads, every config resolves."""
    if not args:
        raise ValueError("name at least one system: a config name, a YAML config file or a result JSON")
    for arg in args:
        if _is_json(arg):
            load_result(arg)
        else:
            resolve_system_config(arg, config_file, overrides)


def load_systems(args: Sequence[str], *, data_dir: str | os.PathLike[str] | None = None,
                 config_file: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None,
                 limit: int | None = None, use_cache: bool = True, progress: bool = True,
                 probe_jobs: int | None = None) -> list[System]:
    """Each argument as a :class:`System`: result JSONs read, configs evaluated (``overrides``: e.g.
    ``{"mode": "test", "task_set": "sts"}``). Labels are made unique (``name#2``)."""
    check_sources(args, config_file, overrides)
    systems: list[System] = []
    for arg in args:
        if _is_json(arg):
            system = load_result(arg)
        else:
            config, label = resolve_system_config(arg, config_file, overrides)
            from .pipeline import run_evaluation  # torch: only when a config is evaluated

            res = run_evaluation(config, data_dir, name=label, limit=limit, use_cache=use_cache,
                                 progress=progress, probe_jobs=probe_jobs)
            system = System(label, arg, "config", dict(res["scores"]), dict(res["details"]),
                            {"model": res["model"].get("name") if isinstance(res.get("model"), dict) else None,
                             "limit": limit, "mode": config.mode, "config": config.model_dump()})
        systems.append(system)
    return unique_labels(systems)


def unique_labels(systems: list[System]) -> list[System]:
    """Rename repeated labels ``label#2``, ``label#3`` ... (in place; returns the list)."""
    seen: dict[str, int] = {}
    for s in systems:
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] > 1:
            s.label = f"{s.label}#{seen[s.label]}"
    return systems


# --------------------------------------------------------------------------- comparing


def _ordered(tasks: Sequence[str]) -> list[str]:
    rank = {t: i for i, t in enumerate(_ORDER)}
    return sorted(tasks, key=lambda t: (rank.get(t, len(rank)), t))


def check_same_tasks(systems: Sequence[System]) -> list[str]:
    """The tasks every system covers, in the paper's order (ValueError naming the sets when they differ)."""
    first = systems[0]
    for other in systems[1:]:
        if set(other.tasks) != set(first.tasks):
            raise ValueError(
                f"the systems cover different tasks: {first.label}: {', '.join(_ordered(first.tasks)) or 'none'}; "
                f"{other.label}: {', '.join(_ordered(other.tasks)) or 'none'} (compare results of the same task set)"
            )
    if not first.tasks:
        raise ValueError(f"{first.label} has no task scores")
    return _ordered(first.tasks)


def _same_pairs(task: str, gold_a: Mapping[str, np.ndarray], gold_b: Mapping[str, np.ndarray]) -> bool:
    return list(gold_a) == list(gold_b) and all(
        len(gold_a[k]) == len(gold_b[k]) and np.allclose(gold_a[k], gold_b[k]) for k in gold_a
    )


def _display(task: str) -> str:
    return TASKS[task].display if task in TASKS else task


def compare_systems(systems: Sequence[System], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
            level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Per task: each system's score and its difference to the first, with paired bootstrap intervals.

    Returns a JSON-able dict: ``systems`` (labels and sources), ``tasks`` (one row per task:
    ``task``, ``display``, ``kind``, ``n_pairs``, ``ci`` (bool), ``scores`` / ``diffs``: label ->
    ``{estimate, low, high, level}``), ``average`` (the STS average row, its interval from the
    per-resample means over the STS tasks; None without STS tasks) and the settings.
    """
    if not systems:
        raise ValueError("no systems to compare")
    tasks = check_same_tasks(systems)
    first = systems[0]
    rows: list[dict[str, Any]] = []
    sts_samples: dict[str, list[np.ndarray]] = {s.label: [] for s in systems}
    sts_points: dict[str, list[float]] = {s.label: [] for s in systems}
    sts_all_ci = True
    for task in tasks:
        kind = TASKS[task].kind if task in TASKS else "sts"
        pairs = [task_pairs(s.details[task]) if kind == "sts" else None for s in systems]
        row: dict[str, Any] = {"task": task, "display": _display(task), "kind": kind, "ci": False,
                               "n_pairs": first.details[task].get("n_pairs")}
        if kind == "sts" and all(p is not None for p in pairs):
            gold = pairs[0][1]  # type: ignore[index]
            for s, p in zip(systems[1:], pairs[1:]):
                if not _same_pairs(task, gold, p[1]):  # type: ignore[index]
                    raise ValueError(
                        f"{first.label} and {s.label} were scored on different pairs of {task} "
                        f"({sum(map(len, gold.values()))} vs {sum(map(len, p[1].values()))}; "  # type: ignore[index]
                        "another --limit or another copy of the data?)"
                    )
            boot = PairedBootstrap(gold, n_resamples, seed, key=task, level=level)
            points = {s.label: boot.point(p[0]) for s, p in zip(systems, pairs)}  # type: ignore[index]
            samples = {s.label: boot.resamples(p[0]) for s, p in zip(systems, pairs)}  # type: ignore[index]
            base = first.label
            row["ci"] = True
            row["scores"] = {k: boot.interval(points[k], samples[k]).to_dict() for k in points}
            row["diffs"] = {k: boot.interval(points[k] - points[base], samples[k] - samples[base]).to_dict()
                            for k in points}
            for k in points:
                sts_samples[k].append(samples[k])
                sts_points[k].append(points[k])
        else:
            if kind == "sts":
                sts_all_ci = False
            nan = float("nan")
            base_score = float(first.scores[task])
            row["scores"] = {s.label: Interval(float(s.scores[task]), nan, nan, level).to_dict() for s in systems}
            row["diffs"] = {s.label: Interval(float(s.scores[task]) - base_score, nan, nan, level).to_dict()
                            for s in systems}
        rows.append(row)

    average = _average_row(systems, tasks, sts_samples, sts_points, sts_all_ci, level)
    return {
        "systems": [{"label": s.label, "source": s.source, "kind": s.kind, **s.info} for s in systems],
        "baseline": first.label,
        "n_resamples": int(n_resamples), "seed": int(seed), "level": float(level),
        "method": "paired percentile bootstrap over pairs, resampled within each subset; "
                  "score = Spearman x100 of the pooled pairs (SentEval 'all')",
        "tasks": rows,
        "average": average,
    }


def _average_row(systems: Sequence[System], tasks: list[str], samples: dict[str, list[np.ndarray]],
                 points: dict[str, list[float]], with_ci: bool, level: float) -> dict[str, Any] | None:
    sts = [t for t in tasks if (TASKS[t].kind if t in TASKS else "sts") == "sts"]
    if len(sts) < 2:
        return None
    first = systems[0].label
    display = "Avg." if len(sts) == len(tasks) else "STS Avg."
    row: dict[str, Any] = {"task": AVG_ROW, "display": display, "kind": "sts", "ci": with_ci, "n_tasks": len(sts)}
    if with_ci:
        mean_points = {k: float(np.mean(v)) for k, v in points.items()}
        mean_samples = {k: np.mean(np.vstack(v), axis=0) for k, v in samples.items()}
        row["scores"] = {k: percentile_interval(mean_points[k], mean_samples[k], level).to_dict() for k in points}
        row["diffs"] = {k: percentile_interval(mean_points[k] - mean_points[first],
                                               mean_samples[k] - mean_samples[first], level).to_dict()
                        for k in points}
    else:
        nan = float("nan")
        means = {s.label: float(np.mean([s.scores[t] for t in sts])) for s in systems}
        row["scores"] = {k: Interval(v, nan, nan, level).to_dict() for k, v in means.items()}
        row["diffs"] = {k: Interval(v - means[first], nan, nan, level).to_dict() for k, v in means.items()}
    return row


def _rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(comparison["tasks"]) + ([comparison["average"]] if comparison.get("average") else [])


def _interval(d: Mapping[str, Any]) -> Interval:
    nan = float("nan")
    as_float = lambda v: nan if v is None else float(v)  # noqa: E731 (null in a JSON read back)
    return Interval(as_float(d["estimate"]), as_float(d["low"]), as_float(d["high"]),
                    float(d.get("level", DEFAULT_LEVEL)))


# --------------------------------------------------------------------------- outputs


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(comparison: Mapping[str, Any]) -> str:
    """One Markdown table: a row per task (and the STS average), per system its score [CI] and,
    after the first, its difference to the first [CI]; a footnote says how the intervals were made."""
    labels = [s["label"] for s in comparison["systems"]]
    base = labels[0]
    heads = ["Task"]
    for i, label in enumerate(labels):
        heads.append(_cell(label))
        if i:
            heads.append(_cell(f"{label} − {base}"))
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join([":---"] + ["---:"] * (len(heads) - 1)) + "|"]
    for row in _rows(comparison):
        cells = [row["display"]]
        for i, label in enumerate(labels):
            cells.append(_interval(row["scores"][label]).format())
            if i:
                diff = _interval(row["diffs"][label])
                mark = " *" if row["ci"] and diff.excludes_zero else ""
                cells.append(diff.format(signed=True) + mark)
        lines.append("| " + " | ".join(cells) + " |")
    pct = round(100 * float(comparison["level"]))
    notes = [f"Spearman x100 (transfer: accuracy). [low, high]: {pct}% paired bootstrap interval over pairs "
             f"({comparison['n_resamples']} resamples within each subset, seed {comparison['seed']}); "
             f"* marks a difference whose interval excludes 0."]
    if any(not r["ci"] and r["kind"] == "sts" for r in _rows(comparison)):
        notes.append("Rows without an interval: a result file without per-pair similarities (written before "
                     "they were saved); rerun `tpembed run -o` to get them.")
    if any(r["kind"] == "transfer" for r in comparison["tasks"]):
        notes.append("Transfer tasks have no interval (no per-example predictions are kept).")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def score_limits(comparison: Mapping[str, Any]) -> tuple[float, float] | None:
    """The score panel's y range: every bar top and both ends of every CI whisker inside, with a
    margin (None: let matplotlib choose, when a score is not positive)."""
    labels = [s["label"] for s in comparison["systems"]]
    ivs = [_interval(r["scores"][label]) for r in _rows(comparison) for label in labels]
    lows = [v for iv in ivs for v in (iv.low, iv.estimate) if np.isfinite(v)]
    highs = [v for iv in ivs for v in (iv.high, iv.estimate) if np.isfinite(v)]
    if not lows or min(lows) <= 0:
        return None
    bottom = max(0.0, min(lows) - 5)
    return bottom, max(max(highs) + 2, bottom + 10)


def write_chart(comparison: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG: per-task grouped bars (one per system) with CI whiskers; below, each system's difference
    to the first with its paired CI (when there are at least two systems)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s["label"] for s in comparison["systems"]]
    rows = _rows(comparison)
    x = np.arange(len(rows))
    panels = 2 if len(labels) > 1 else 1
    fig, axes = plt.subplots(panels, 1, figsize=(max(7.0, 1.1 * len(rows) * max(1, len(labels)) / 2 + 3),
                                                 4.2 * panels), squeeze=False)

    def bars(ax: Any, key: str, names: list[str], offset0: int) -> None:
        n = len(names)
        w = 0.8 / max(1, n)
        for j, label in enumerate(names):
            ivs = [_interval(r[key][label]) for r in rows]
            est = np.array([iv.estimate for iv in ivs])
            lo = np.array([iv.estimate - iv.low if np.isfinite(iv.low) else 0.0 for iv in ivs])
            hi = np.array([iv.high - iv.estimate if np.isfinite(iv.high) else 0.0 for iv in ivs])
            ax.bar(x - 0.4 + w * (j + 0.5), np.nan_to_num(est), w, yerr=np.vstack([lo, hi]), capsize=2,
                   label=label, color=f"C{j + offset0}", error_kw={"elinewidth": 0.9})

    ax = axes[0][0]
    bars(ax, "scores", labels, 0)
    limits = score_limits(comparison)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xticks(x, [r["display"] for r in rows], rotation=20)
    ax.set_ylabel("Spearman x100")
    pct = round(100 * float(comparison["level"]))
    ax.set_title(f"scores with {pct}% paired bootstrap CIs ({comparison['n_resamples']} resamples)", fontsize=10)
    # beside the axes, never over a bar or a whisker
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    if panels == 2:
        ax = axes[1][0]
        bars(ax, "diffs", labels[1:], 1)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [r["display"] for r in rows], rotation=20)
        ax.set_ylabel(f"difference to {labels[0]}")
        ax.set_title(f"differences to {labels[0]} (paired CIs)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_comparison(comparison: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """compare.md, compare.json and compare.png in ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "compare.md", "json": out / "compare.json", "png": out / "compare.png"}
    paths["md"].write_text(to_markdown(comparison), encoding="utf-8")
    paths["json"].write_text(json.dumps(jsonable(comparison), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    write_chart(comparison, paths["png"])
    return paths
