"""What ``tpembed sweep`` writes: grid.csv, grid.json, heatmap.png, best.yaml and the text grid."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .grid import SweepResult
from .outputs import entry_name, write_config_file, write_csv


def write_grid(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    """grid.csv (one row per cell) and grid.json (grid + sweep metadata)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "grid.csv", out_dir / "grid.json"
    cells = result.cells()
    write_csv(csv_path, ["tp_exiting_index", "output_layer", "spearman"],
              [["" if exit_layer is None else exit_layer, layer, f"{score:.4f}"] for exit_layer, layer, score in cells])
    payload = asdict(result)
    payload["scores"] = {row: {str(k): v for k, v in by_layer.items()} for row, by_layer in result.scores.items()}
    payload["best"] = dict(zip(("tp_exiting_index", "output_layer", "spearman"), result.best()))
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    return csv_path, json_path


def write_heatmap(result: SweepResult, path: Path) -> Path:
    """x = output layer, y = TP exit layer (plus the vanilla row), colour = Spearman x100."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    labels = list(result.scores)
    grid = np.array([[result.scores[row][layer] for layer in result.outputs] for row in labels])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(result.outputs) + 2.5), max(3.0, 0.45 * len(labels) + 1.8)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="STS-B dev Spearman x100")
    ax.set_xticks(range(len(result.outputs)), [str(k) for k in result.outputs])
    ax.set_yticks(
        range(len(labels)),
        ["vanilla" if row == "vanilla" else f"TP [{result.tp_starting_index},{row})" for row in labels],
    )
    ax.set_xlabel(f"output layer (hidden_states index, {result.num_layers} = final)")
    ax.set_ylabel("plan / TP exit layer")
    if grid.size <= 600:  # numbers stay readable
        low, high = np.nanmin(grid), np.nanmax(grid)
        for (i, j), value in np.ndenumerate(grid):
            dark = value < low + 0.6 * (high - low)
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
    exit_layer, layer, score = result.best()
    i = labels.index("vanilla" if exit_layer is None else str(exit_layer))
    j = result.outputs.index(layer)
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_title(f"{result.model}, {result.prompt_method}: best {score:.2f} (red box)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_best_yaml(result: SweepResult, path: Path, name: str | None = None) -> tuple[Path, str]:
    """best.yaml in the paper's shape: the best cell as default_config, plus the best TP and vanilla cells."""
    name = name or entry_name(result.model, "sweep")
    entries = {f"{name}-best": result.run_config(result.best())}
    for plan in ("tp", "vanilla"):
        try:
            entries[f"{name}-best-{plan}"] = result.run_config(result.best(plan))
        except ValueError:
            continue
    header = (
        f"# written by `tpembed sweep` from STS-B dev (never a test set): {result.model}, {result.prompt_method}\n"
        f"# best dev Spearman x100: {result.best()[2]:.2f}; run it with: tpembed run {name}-best --config {path}\n"
    )
    return write_config_file(path, header, entries, f"{name}-best"), f"{name}-best"


def format_grid(result: SweepResult) -> str:
    """A compact text table of the grid (rows = plans, columns = output layers)."""
    head = "plan".ljust(12) + "".join(f"{k:>7d}" for k in result.outputs)
    lines = [head]
    for row, by_layer in result.scores.items():
        label = "vanilla" if row == "vanilla" else f"TP[{result.tp_starting_index},{row})"
        lines.append(label.ljust(12) + "".join(f"{by_layer[k]:7.2f}" for k in result.outputs))
    return "\n".join(lines)
