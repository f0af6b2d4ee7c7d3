"""The coordinate-ascent tuner (``tpembed search``): prompt (or ensemble) x demonstration x TP range x
Contrastive Prompting x pooling x output layers on STS-B dev, without running the full product.

Start from the first option of every axis (at the start row's best single output layer); then, axis
after axis, try every option with the other axes held, keep the best (ties keep the current value),
and repeat for ``rounds`` or until a round changes nothing. The :class:`DevScorer` makes it cheap: a
pass is spent only on a new row, ensembles and layer windows are combined from rows already run,
and rows go through the embedding cache. ``subsample`` scores on evenly spaced dev pairs (every
genre), for early looks. Never touches a test set.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

from tqdm.auto import tqdm

from ..config import EncoderConfig, RunConfig
from ..models import LoadedModel
from .candidate import Candidate
from .layers import ANY_MODEL, output_layers
from .loading import load_for_tuning
from .scorer import DevScorer, dev_data
from .space import AXES, SearchSpace, check_space


@dataclass
class Evaluation:
    """One scored candidate, in search order."""

    step: int
    round: int
    axis: str
    candidate: Candidate
    spearman: float


@dataclass
class SearchResult:
    """Everything the search scored, the winner, and what it cost."""

    model: str
    space: SearchSpace
    evaluations: list[Evaluation]
    best: Candidate
    best_score: float
    n_pairs: int
    n_sentences: int
    rows_encoded: int
    seconds: float
    base_settings: dict[str, object]

    def ranked(self) -> list[Evaluation]:
        """Distinct candidates, best first."""
        seen: dict[Candidate, Evaluation] = {}
        for e in self.evaluations:
            seen.setdefault(e.candidate, e)
        return sorted(seen.values(), key=lambda e: -e.spearman)

    def run_config(self, candidate: Candidate | None = None) -> RunConfig:
        """A candidate (default: the best) as a RunConfig for the 7 STS test tasks."""
        return (candidate or self.best).run_config(self.base_settings)


def coordinate_ascent(
    scorer: DevScorer, space: SearchSpace, rounds: int = 2, progress: bool = True
) -> tuple[Candidate, float, list[Evaluation]]:
    """The search itself (see the module docstring); returns the best candidate, its score and the trace."""
    start = space.start()
    trace: list[Evaluation] = []

    def visit(candidate: Candidate, rnd: int, axis: str) -> float:
        score = scorer.score(candidate)
        trace.append(Evaluation(len(trace), rnd, axis, candidate, score))
        return score

    # the start row's best single output layer (free: one row gives them all)
    current, best = start, visit(start, 0, "start")
    for candidate in [start.replace(output_layer=layer) for layer in space.outputs]:
        score = visit(candidate, 0, "start")
        if score > best:
            current, best = candidate, score
    bar = tqdm(total=rounds * len(AXES), desc="search", unit="axis", disable=not progress)
    for rnd in range(1, rounds + 1):
        changed = False
        for axis in AXES:
            bar.set_postfix_str(f"round {rnd}, {axis}: {best:.2f}")
            for option in space.options(axis, current):
                candidate = current.replace(**option)
                score = visit(candidate, rnd, axis)
                if score > best:
                    current, best, changed = candidate, score, True
            bar.update(1)
        if not changed:
            break
    bar.close()
    return current, best, trace


def load_for_search(config: EncoderConfig, space: SearchSpace, *, progress: bool = True) -> LoadedModel:
    """Load ``config.model`` once ``space`` is checked against its config, so options it cannot run fail first."""

    def check(num_layers: int) -> None:
        check_space(replace(space, outputs=output_layers(space.outputs, num_layers)), num_layers, config.model)

    return load_for_tuning(config, ANY_MODEL, check, progress=progress)


def run_search(
    model: LoadedModel,
    space: SearchSpace,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    rounds: int = 2,
    limit: int | None = None,
    subsample: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    **settings: object,
) -> SearchResult:
    """Coordinate ascent on STS-B dev for ``model``; ``settings`` are further EncoderConfig fields.

    ``space.outputs`` may count from the end and defaults to the upper half of the model's layers.
    """
    t0 = time.perf_counter()
    name = str(model.identity.get("name", "in-memory model"))
    base = {"model": name, **settings}
    space = replace(space, outputs=output_layers(space.outputs, model.num_layers))
    check_space(space, model.num_layers, name)
    data = dev_data(data_dir, limit, subsample, progress=progress)
    scorer = DevScorer(model, data, space.outputs, base, use_cache=use_cache, progress=progress)
    best, best_score, trace = coordinate_ascent(scorer, space, rounds, progress)
    return SearchResult(
        model=name,
        space=space,
        evaluations=trace,
        best=best,
        best_score=best_score,
        n_pairs=data.n_pairs,
        n_sentences=len(scorer.sentences),
        rows_encoded=scorer.rows_encoded,
        seconds=time.perf_counter() - t0,
        base_settings=base,
    )
