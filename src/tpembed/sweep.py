"""Layer search on STS-B dev: every TP exit layer x every output layer, one forward pass per row.

A row of the grid is one plan: vanilla, or TP on layers [start, e). One pass over the STS-B dev
sentences captures the last-token state at every candidate output layer (``encode_layers``), so a
row of N cells costs one pass, not N. Each (row, layer) has its own embedding-cache namespace, the
same one ``tpembed run``/``eval`` use, so an interrupted sweep resumes and a later ``run`` of the
chosen cell reuses the vectors. Scores come from the same ``evaluate`` call ``eval`` makes, so a
cell's number is exactly what a separate ``tpembed eval`` with its settings prints.
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from .embedding_cache import EmbeddingCache, cached_layers, default_cache_dir
from .config import EncoderConfig, RunConfig, load_config_file
from .encoder import Encoder
from .evaluation import ensure_senteval, evaluate, task_sentences
from .models import LoadedModel, load_model_with_progress, model_num_layers
from .identity import cache_namespace

DEV_TASK = "STSBenchmark-dev"


def parse_layers(text: str) -> list[int]:
    """``"a..b"`` (inclusive), ``"a,b,c"`` or ``"a"`` -> sorted distinct layer numbers."""
    values: set[int] = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if ".." in part:
                low, high = (int(x) for x in part.split(".."))
                if high < low:
                    raise ValueError(f"empty range {part!r}: the end must be >= the start")
                values.update(range(low, high + 1))
            elif part:
                values.add(int(part))
    except ValueError as err:
        if "empty range" in str(err):
            raise
        raise ValueError(f"cannot read layers {text!r}: use a..b (inclusive), a,b,c or a single number") from None
    if not values:
        raise ValueError(f"no layers in {text!r}")
    return sorted(values)


def check_grid(num_layers: int, start: int, exits: Sequence[int], outputs: Sequence[int]) -> None:
    """Clear errors for a grid the model cannot run."""
    if not 0 <= start < num_layers:
        raise ValueError(f"tp_starting_index={start} must be in 0..{num_layers - 1} (the model has {num_layers} layers)")
    bad_exits = [e for e in exits if not start < e <= num_layers]
    if bad_exits:
        raise ValueError(
            f"TP exit layers {bad_exits} are invalid: each exit must be > tp_starting_index ({start}) and "
            f"<= {num_layers} (the model's decoder layers; TP runs before layers [start, exit))"
        )
    bad_outputs = [k for k in outputs if not 1 <= k <= num_layers]
    if bad_outputs:
        raise ValueError(
            f"output layers {bad_outputs} are out of range: use 1..{num_layers} or -{num_layers}..-1 "
            f"(HF hidden_states numbering, {num_layers} = -1 = final normed output; 0, the embeddings, "
            "is the same for every sentence)"
        )


def plan_grid(
    num_layers: int, start: int, exits: Sequence[int] | None, outputs: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """The grid's exits and output layers, defaults filled in from the layer count, checked."""
    exits = sorted(set(exits)) if exits else default_exits(num_layers, start)
    if outputs:  # negatives count from the end, as everywhere else; each layer once
        outputs = sorted({k + num_layers + 1 if -num_layers <= k < 0 else k for k in outputs})
    else:
        outputs = default_outputs(num_layers)
    check_grid(num_layers, start, exits, outputs)
    return exits, outputs


def load_for_sweep(
    model: str,
    start: int,
    exits: Sequence[int] | None,
    outputs: Sequence[int] | None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
) -> LoadedModel:
    """Load ``model`` once the grid is checked against its config, so a grid it cannot run fails first."""
    known = model_num_layers(model)  # no weights
    if known is not None:
        plan_grid(known, start, exits, outputs)
    return load_model_with_progress(model, device=device, dtype=dtype, progress=progress)


def default_exits(num_layers: int, start: int) -> list[int]:
    """start+1 .. start+8 (the paper's ranges are 5-6 layers long), within the model."""
    return list(range(start + 1, min(num_layers, start + 8) + 1))


def default_outputs(num_layers: int) -> list[int]:
    """The upper half of the layers (the paper exits at 27/32 or at -2)."""
    return list(range((num_layers + 1) // 2, num_layers + 1))


@dataclass
class SweepResult:
    """The grid of STS-B dev Spearman x100 scores and what it took to get them."""

    model: str
    prompt_method: str
    tp_starting_index: int
    exits: list[int]
    outputs: list[int]
    num_layers: int
    scores: dict[str, dict[int, float]]  # row ("vanilla" or str(exit)) -> output layer -> score
    base_settings: dict[str, Any]
    forward_passes: int = 0  # model forward calls (batches) this run made
    encoded_rows: int = 0  # grid rows that needed encoding (the rest came from the cache)
    n_sentences: int = 0
    seconds: float = 0.0
    limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[tuple[int | None, int, float]]:
        """(tp_exiting_index or None for vanilla, output_layer, spearman), rows then layers."""
        return [
            (None if row == "vanilla" else int(row), layer, score)
            for row, by_layer in self.scores.items()
            for layer, score in by_layer.items()
        ]

    def best(self, plan: str | None = None) -> tuple[int | None, int, float]:
        """Best cell overall, or of one plan ("tp" / "vanilla"); ties go to the earlier cell."""
        cells = [c for c in self.cells() if plan is None or (c[0] is None) == (plan == "vanilla")]
        if not cells:
            raise ValueError(f"no {plan} cells in this sweep")
        return max(cells, key=lambda c: c[2])

    def run_config(self, cell: tuple[int | None, int, float]) -> RunConfig:
        """The cell as a RunConfig for the 7 STS test tasks."""
        exit_layer, layer, _ = cell
        plan = _plan(self.tp_starting_index, exit_layer)
        return RunConfig(**{**self.base_settings, **plan, "output_layer": layer, "mode": "test", "task_set": "sts"})


def _plan(start: int, exit_layer: int | None) -> dict[str, Any]:
    """The plan keys of one grid row (None = vanilla)."""
    if exit_layer is None:
        return {"use_which_plan": "vanilla", "tp_starting_index": 0, "tp_exiting_index": 0}
    return {"use_which_plan": "tp", "tp_starting_index": start, "tp_exiting_index": exit_layer}


def run_sweep(
    model: str | LoadedModel = "smollm2-135m",
    prompt_method: str = "prompteol",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    tp_starting_index: int = 1,
    exits: Sequence[int] | None = None,
    outputs: Sequence[int] | None = None,
    include_vanilla: bool = True,
    limit: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    **settings: Any,
) -> SweepResult:
    """Score STS-B dev for vanilla and every TP range [start, e), at every output layer.

    ``settings`` are further :class:`EncoderConfig` fields (batch_size, pst_init, seed, device,
    dtype, max_length). Never touches a test set.
    """
    t0 = time.perf_counter()
    model_name = model if isinstance(model, str) else str(model.identity.get("name", "in-memory model"))
    base = {"model": model_name, "prompt_method": prompt_method, **settings}
    EncoderConfig(**base)  # validate the shared settings before loading anything
    # everything that can fail fast does so before the model loads: data (fetched once if missing), grid
    data_dir = ensure_senteval(data_dir, [DEV_TASK], progress=progress)
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        device, dtype = base.get("device", "auto"), base.get("dtype", "auto")
        loaded = load_for_sweep(model, tp_starting_index, exits, outputs, device=device, dtype=dtype, progress=progress)
    num_layers = loaded.num_layers
    exits, outputs = plan_grid(num_layers, tp_starting_index, exits, outputs)
    sentences = task_sentences([DEV_TASK], data_dir, limit)

    forward_calls = [0]
    counter = loaded.model.register_forward_pre_hook(lambda *_: forward_calls.__setitem__(0, forward_calls[0] + 1))
    rows: list[int | None] = ([None] if include_vanilla else []) + list(exits)
    scores: dict[str, dict[int, float]] = {}
    encoded_rows = 0
    try:
        bar = tqdm(rows, desc="sweep", unit="row", disable=not progress)
        for exit_layer in bar:
            label = "vanilla" if exit_layer is None else str(exit_layer)
            bar.set_postfix_str(f"TP [{tp_starting_index}, {exit_layer})" if exit_layer is not None else "vanilla")
            row_config = EncoderConfig(**{**base, **_plan(tp_starting_index, exit_layer), "output_layer": outputs[0]})
            encoder = Encoder(loaded, config=row_config)
            before = forward_calls[0]
            vectors = _encode_row(encoder, sentences, outputs, use_cache, progress)
            encoded_rows += forward_calls[0] > before
            scores[label] = {layer: _score(vectors[layer], sentences, data_dir, limit) for layer in outputs}
    finally:
        counter.remove()
    return SweepResult(
        model=model_name,
        prompt_method=prompt_method,
        tp_starting_index=tp_starting_index,
        exits=list(exits),
        outputs=list(outputs),
        num_layers=num_layers,
        scores=scores,
        base_settings=base,
        forward_passes=forward_calls[0],
        encoded_rows=encoded_rows,
        n_sentences=len(sentences),
        seconds=time.perf_counter() - t0,
        limit=limit,
        extra={"model_identity": {k: v for k, v in loaded.identity.items() if isinstance(v, (str, int, float))}},
    )


def _encode_row(
    encoder: Encoder, sentences: list[str], outputs: list[int], use_cache: bool, progress: bool
) -> dict[int, np.ndarray]:
    def encode_layers(chunk: list[str], layers: list[int]) -> dict[int, np.ndarray]:
        return encoder.encode_layers(chunk, layers, show_progress_bar=progress)

    namespaces = {layer: cache_namespace(encoder, layer) for layer in outputs} if use_cache else {}
    if use_cache and None in namespaces.values():
        warnings.warn("embedding cache disabled: this in-memory model has no file hash or source to key it by")
        namespaces = {}
    if not namespaces:
        return encode_layers(sentences, outputs)
    caches = {layer: EmbeddingCache(default_cache_dir() / "embeddings", ns) for layer, ns in namespaces.items()}
    try:
        return cached_layers(encode_layers, caches)(sentences)
    finally:
        for cache in caches.values():
            cache.close()


def _score(vectors: np.ndarray, sentences: list[str], data_dir: Any, limit: int | None) -> float:
    """STS-B dev Spearman x100 through the very ``evaluate`` call that ``tpembed eval`` makes."""
    row_of = {s: i for i, s in enumerate(sentences)}

    def lookup(batch: list[str]) -> np.ndarray:
        return vectors[[row_of[s] for s in batch]]

    result = evaluate([DEV_TASK], data_dir, lookup, mode="dev", limit=limit, progress=False)
    return float(result["scores"][DEV_TASK])


# ---- outputs -------------------------------------------------------------------------------


def write_grid(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    """grid.csv (one row per cell) and grid.json (grid + sweep metadata)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "grid.csv", out_dir / "grid.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tp_exiting_index", "output_layer", "spearman"])
        for exit_layer, layer, score in result.cells():
            writer.writerow(["" if exit_layer is None else exit_layer, layer, f"{score:.4f}"])
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


def entry_name(result: SweepResult) -> str:
    """A config name derived from the model: ``<stem>-sweep``."""
    stem = Path(result.model).stem if result.model.endswith(".gguf") else Path(result.model.rstrip("/")).name
    return f"{stem or 'model'}-sweep"


def _yaml_entry(config: RunConfig) -> dict[str, Any]:
    data = config.model_dump(exclude_defaults=False)
    entry: dict[str, Any] = {"model_name_or_path": data.pop("model")}
    for key, value in data.items():
        if value is None or (key in ("device", "dtype") and value == "auto"):
            continue  # keep the file portable: let each machine choose its device
        entry[key] = value
    return entry


def write_best_yaml(result: SweepResult, path: Path, name: str | None = None) -> tuple[Path, str]:
    """best.yaml in the paper's shape: the best cell as default_config, plus the best TP and vanilla cells.

    The file is read back with :func:`load_config_file` before returning, so ``tpembed run`` accepts it.
    """
    name = name or entry_name(result)
    entries: dict[str, Any] = {f"{name}-best": _yaml_entry(result.run_config(result.best()))}
    for plan in ("tp", "vanilla"):
        try:
            entries[f"{name}-best-{plan}"] = _yaml_entry(result.run_config(result.best(plan)))
        except ValueError:
            continue
    header = (
        f"# written by `tpembed sweep` from STS-B dev (never a test set): {result.model}, {result.prompt_method}\n"
        f"# best dev Spearman x100: {result.best()[2]:.2f}; run it with: tpembed run {name}-best --config {path}\n"
    )
    document = {"default_config": f"{name}-best", "models": entries}
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    load_config_file(path)  # fails loudly here rather than in the user's later `tpembed run`
    return path, f"{name}-best"


def format_grid(result: SweepResult) -> str:
    """A compact text table of the grid (rows = plans, columns = output layers)."""
    head = "plan".ljust(12) + "".join(f"{k:>7d}" for k in result.outputs)
    lines = [head]
    for row, by_layer in result.scores.items():
        label = "vanilla" if row == "vanilla" else f"TP[{result.tp_starting_index},{row})"
        lines.append(label.ljust(12) + "".join(f"{by_layer[k]:7.2f}" for k in result.outputs))
    return "\n".join(lines)
