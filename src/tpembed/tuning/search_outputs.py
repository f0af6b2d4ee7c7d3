"""What ``tpembed search`` writes: grid.csv, ranked.csv, search.json, best.yaml and the ranked text."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..prompts import demonstration_text
from .ascent import Evaluation, SearchResult
from .candidate import Candidate
from .outputs import entry_name, write_config_file, write_csv

COLUMNS = ["prompts", "demo", "tp", "cp_layer", "cp_alpha", "pooling", "layers", "filter", "spearman"]


def _cells(c: Candidate, score: float) -> list[Any]:
    """One candidate as the COLUMNS of the CSV files."""
    tp = "vanilla" if c["use_which_plan"] == "vanilla" else f"{c['tp_starting_index']}-{c['tp_exiting_index']}"
    cp_on = c["cp_layer"] is not None
    return ["+".join(c.as_list("prompt_method")), _demo_cell(c), tp, c["cp_layer"] if cp_on else "off",
            c["cp_alpha"] if cp_on else "", c["pooling"], ",".join(map(str, c.as_list("output_layer"))),
            "" if c.get("embed_filter") is None else c["embed_filter"], f"{score:.4f}"]


def _demo_cell(c: Candidate) -> str:
    """The demonstration option as ``--demos`` spells it: storm, storm+jockey, storm|jockey+chef ('' when off)."""
    if c.get("demo_ensemble") is not None:
        return "|".join(map(demonstration_text, c["demo_ensemble"]))
    return "" if c.get("demonstration") is None else demonstration_text(c["demonstration"])


GAIN_COLUMNS = ["gain", "ci_low", "ci_high", "adopted"]  # grid.csv: the step's gain over the current candidate


def _num(value: float | None) -> float | None:
    """A float for JSON: None for a missing or non-finite value."""
    return None if value is None or not math.isfinite(value) else float(value)


def _gain_cells(e: Evaluation) -> list[Any]:
    """The GAIN_COLUMNS of one evaluation (empty where not recorded: the starting point)."""
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    return [fmt(e.gain), fmt(e.ci_low), fmt(e.ci_high), int(e.adopted)]


def write_outputs(result: SearchResult, out_dir: Path, name: str | None = None) -> dict[str, Path]:
    """grid.csv (every evaluation in order), ranked.csv (distinct candidates, best first),
    search.json (trace + settings) and best.yaml (the winner, read back to check ``tpembed run`` accepts it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f for k, f in
             (("grid", "grid.csv"), ("ranked", "ranked.csv"), ("json", "search.json"), ("yaml", "best.yaml"))}
    write_csv(paths["grid"], ["step", "round", "axis", *COLUMNS, *GAIN_COLUMNS],
              ([e.step, e.round, e.axis, *_cells(e.candidate, e.spearman), *_gain_cells(e)]
               for e in result.evaluations))
    write_csv(paths["ranked"], ["rank", *COLUMNS],
              ([i, *_cells(e.candidate, e.spearman)] for i, e in enumerate(result.ranked(), 1)))
    payload = {
        "model": result.model,
        "space": asdict(result.space),
        "best": {"label": result.best.label(), "spearman": result.best_score, "settings": result.best.settings()},
        "n_pairs": result.n_pairs, "n_sentences": result.n_sentences, "rows_encoded": result.rows_encoded,
        "seconds": result.seconds,
        "require_ci": result.require_ci, "ci": result.ci,
        "evaluations": [{"step": e.step, "round": e.round, "axis": e.axis, "label": e.candidate.label(),
                         "spearman": e.spearman, "gain": _num(e.gain), "ci_low": _num(e.ci_low),
                         "ci_high": _num(e.ci_high), "adopted": e.adopted} for e in result.evaluations],
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")
    entry = f"{name or entry_name(result.model, 'search')}-best"
    header = (
        f"# written by `tpembed search` from STS-B dev ({result.n_pairs} pairs; never a test set): {result.model}\n"
        f"# best dev Spearman x100: {result.best_score:.2f} ({result.best.label()})\n"
        f"# run it with: tpembed run {entry} --config {paths['yaml']}\n"
    )
    write_config_file(paths["yaml"], header, {entry: result.run_config()}, entry)
    return paths


def format_ranked(result: SearchResult, top: int = 10) -> str:
    """The best ``top`` candidates as text."""
    lines = [f"{'dev':>7}  candidate"]
    lines += [f"{e.spearman:7.2f}  {e.candidate.label()}" for e in result.ranked()[:top]]
    return "\n".join(lines)
