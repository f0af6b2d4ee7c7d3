"""The exhaustive-grid tuner (``tpembed sweep``): every TP exit layer x every output layer on STS-B dev.

A row of the grid is one plan: vanilla, or TP on layers [start, e). The :class:`DevScorer` encodes a
row once for all its output layers, so a row of N cells costs one pass, not N, and an interrupted
sweep resumes from the embedding cache. A cell's number is exactly what ``tpembed eval`` prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ..config import EncoderConfig, RunConfig
from ..models import LoadedModel
from .candidate import Candidate, plan_settings
from .layers import check_output_layers, output_layers, refusal
from .loading import load_for_tuning
from .scorer import DevScorer, dev_data


def default_exits(num_layers: int, start: int) -> list[int]:
    """start+1 .. start+8 (the paper's ranges are 5-6 layers long), within the model."""
    return list(range(start + 1, min(num_layers, start + 8) + 1))


def check_grid(num_layers: int, start: int, exits: Sequence[int], outputs: Sequence[int]) -> None:
    """Clear errors for a grid the model cannot run (the Encoder's layer rules plus the grid's own)."""
    if not 0 <= start < num_layers:  # every TP row starts at a decoder layer
        raise ValueError(f"tp_starting_index={start} must be in 0..{num_layers - 1} (the model has {num_layers} layers)")
    # a TP row needs a non-empty range; the model's bound is check_layers'
    bad_exits = [e for e in exits if e <= start or refusal(row_candidate(start, e), num_layers)]
    if bad_exits:
        raise ValueError(
            f"TP exit layers {bad_exits} are invalid: each exit must be > tp_starting_index ({start}) and "
            f"<= {num_layers} (the model's decoder layers; TP runs before layers [start, exit))"
        )
    check_output_layers(outputs, num_layers)


def plan_grid(
    num_layers: int, start: int, exits: Sequence[int] | None, outputs: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """The grid's exits and output layers, defaults filled in from the layer count, checked."""
    exits = sorted(set(exits)) if exits else default_exits(num_layers, start)
    outputs = output_layers(outputs, num_layers)
    check_grid(num_layers, start, exits, outputs)
    return exits, outputs


def row_candidate(start: int, exit_layer: int | None) -> Candidate:
    """The plan of one grid row (None = vanilla)."""
    return Candidate(plan_settings(None if exit_layer is None else (start, exit_layer)))


def load_for_sweep(
    config: EncoderConfig, start: int, exits: Sequence[int] | None, outputs: Sequence[int] | None,
    *, progress: bool = True,
) -> LoadedModel:
    """Load ``config.model`` once the grid is checked against its config, so a grid it cannot run fails first."""
    swept = row_candidate(start, None).replace(output_layer=-1)
    return load_for_tuning(config, swept, lambda num_layers: plan_grid(num_layers, start, exits, outputs),
                           progress=progress)


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

    def candidate(self, cell: tuple[int | None, int, float]) -> Candidate:
        """A cell's settings."""
        exit_layer, layer, _ = cell
        return row_candidate(self.tp_starting_index, exit_layer).replace(output_layer=layer)

    def run_config(self, cell: tuple[int | None, int, float]) -> RunConfig:
        """The cell as a RunConfig for the 7 STS test tasks."""
        return self.candidate(cell).run_config(self.base_settings)


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
    data = dev_data(data_dir, limit, progress=progress)
    loaded = model if isinstance(model, LoadedModel) else load_for_sweep(
        EncoderConfig(**base), tp_starting_index, exits, outputs, progress=progress)
    exits, outputs = plan_grid(loaded.num_layers, tp_starting_index, exits, outputs)
    scorer = DevScorer(loaded, data, outputs, base, use_cache=use_cache, progress=progress)
    rows: list[int | None] = ([None] if include_vanilla else []) + list(exits)
    scores: dict[str, dict[int, float]] = {}
    bar = tqdm(rows, desc="sweep", unit="row", disable=not progress)
    for exit_layer in bar:
        bar.set_postfix_str(f"TP [{tp_starting_index}, {exit_layer})" if exit_layer is not None else "vanilla")
        row = row_candidate(tp_starting_index, exit_layer)
        scores["vanilla" if exit_layer is None else str(exit_layer)] = {
            layer: scorer.score(row.replace(output_layer=layer)) for layer in outputs
        }
    return SweepResult(
        model=model_name,
        prompt_method=prompt_method,
        tp_starting_index=tp_starting_index,
        exits=list(exits),
        outputs=list(outputs),
        num_layers=loaded.num_layers,
        scores=scores,
        base_settings=base,
        forward_passes=scorer.forward_calls,
        encoded_rows=scorer.rows_encoded,
        n_sentences=len(scorer.sentences),
        seconds=time.perf_counter() - t0,
        limit=limit,
        extra={"model_identity": {k: v for k, v in loaded.identity.items() if isinstance(v, (str, int, float))}},
    )
