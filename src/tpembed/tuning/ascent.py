"""The coordinate-ascent tuner (``tpembed search``): prompt (or ensemble) x demonstration x TP range x
Contrastive Prompting x pooling x output layers on STS-B dev, without running the full product.

Start from the first option of every axis (at the start row's best single output layer); then, axis
after axis, try every option with the other axes held, keep the best (ties keep the current value),
and repeat for ``rounds`` or until a round changes nothing. The :class:`DevScorer` makes it cheap: a
pass is spent only on a new row, ensembles and layer windows are combined from rows already run,
and rows go through the embedding cache. ``subsample`` scores on evenly spaced dev pairs (every
genre), for early looks. Never touches a test set.

Every step records its dev gain over the current candidate and that gain's 95% paired bootstrap
interval over the dev pairs (:mod:`tpembed.evaluation.bootstrap`: both candidates scored on the same
resamples). With ``require_ci`` a change is adopted only when the interval's lower bound is above 0
(a gain the pairs support, not one noise could give); by default any gain is adopted, as before.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from ..config import EncoderConfig, RunConfig
from ..evaluation.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, PairedBootstrap
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
    gain: float | None = None  # spearman minus the current candidate's (when this one was tried)
    ci_low: float | None = None  # the gain's paired bootstrap interval on the dev pairs
    ci_high: float | None = None
    adopted: bool = False  # this candidate became the current one


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
    require_ci: bool = False  # adopted only changes whose gain's CI lower bound is above 0
    ci: dict[str, object] | None = None  # the intervals' settings: resamples, seed, level

    def ranked(self) -> list[Evaluation]:
        """Distinct candidates, best first."""
        seen: dict[Candidate, Evaluation] = {}
        for e in self.evaluations:
            seen.setdefault(e.candidate, e)
        return sorted(seen.values(), key=lambda e: -e.spearman)

    def run_config(self, candidate: Candidate | None = None) -> RunConfig:
        """A candidate (default: the best) as a RunConfig for the 7 STS test tasks."""
        return (candidate or self.best).run_config(self.base_settings)


class _GainCI:
    """Paired bootstrap intervals of score gains on the scorer's dev pairs (resamples drawn once)."""

    def __init__(self, scorer: DevScorer, n_resamples: int, seed: int, level: float) -> None:
        gold = {name: subset.gold for name, subset in scorer.data.subsets.items()}
        self.scorer = scorer
        self.boot = PairedBootstrap(gold, n_resamples, seed, key="search", level=level)
        self._samples: dict[Candidate, np.ndarray] = {}

    def _resampled(self, candidate: Candidate) -> np.ndarray:
        if candidate not in self._samples:
            self._samples[candidate] = self.boot.resamples(self.scorer.similarities(candidate))
        return self._samples[candidate]

    def gain(self, candidate: Candidate, current: Candidate) -> tuple[float, float]:
        """The (low, high) interval of ``score(candidate) - score(current)``."""
        if candidate == current:
            return 0.0, 0.0
        diff = self._resampled(candidate) - self._resampled(current)
        iv = self.boot.interval(0.0, diff)
        return iv.low, iv.high


def coordinate_ascent(
    scorer: DevScorer, space: SearchSpace, rounds: int = 2, progress: bool = True, *, require_ci: bool = False,
    ci_resamples: int = DEFAULT_RESAMPLES, ci_seed: int = DEFAULT_SEED, ci_level: float = DEFAULT_LEVEL,
) -> tuple[Candidate, float, list[Evaluation]]:
    """The search itself (see the module docstring); returns the best candidate, its score and the trace.

    Each evaluation records its gain over the current candidate and the gain's paired bootstrap
    interval (``ci_resamples`` resamples of the dev pairs, ``ci_seed``). A better score is adopted;
    with ``require_ci`` only when the interval's lower bound is above 0 as well.
    """
    start = space.start()
    trace: list[Evaluation] = []
    ci = _GainCI(scorer, ci_resamples, ci_seed, ci_level)

    def visit(candidate: Candidate, rnd: int, axis: str, current: Candidate | None, best: float) -> bool:
        """Score ``candidate``, record it, and say whether it replaces ``current``."""
        score = scorer.score(candidate)
        if current is None:  # the starting point
            trace.append(Evaluation(len(trace), rnd, axis, candidate, score, adopted=True))
            return True
        low, high = ci.gain(candidate, current)
        adopt = score > best and (not require_ci or bool(low > 0))
        trace.append(Evaluation(len(trace), rnd, axis, candidate, score, score - best, low, high, adopt))
        return adopt

    # the start row's best single output layer (free: one row gives them all)
    visit(start, 0, "start", None, float("nan"))
    current, best = start, scorer.score(start)
    for candidate in [start.replace(output_layer=layer) for layer in space.outputs]:
        if visit(candidate, 0, "start", current, best):
            current, best = candidate, scorer.score(candidate)
    bar = tqdm(total=rounds * len(AXES), desc="search", unit="axis", disable=not progress)
    for rnd in range(1, rounds + 1):
        changed = False
        for axis in AXES:
            bar.set_postfix_str(f"round {rnd}, {axis}: {best:.2f}")
            for option in space.options(axis, current):
                candidate = current.replace(**option)
                if visit(candidate, rnd, axis, current, best):
                    current, best, changed = candidate, scorer.score(candidate), True
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
    require_ci: bool = False,
    ci_resamples: int = DEFAULT_RESAMPLES,
    ci_seed: int = DEFAULT_SEED,
    **settings: object,
) -> SearchResult:
    """Coordinate ascent on STS-B dev for ``model``; ``settings`` are further EncoderConfig fields.

    ``space.outputs`` may count from the end and defaults to the upper half of the model's layers.
    Every step records its gain's paired bootstrap CI on the dev pairs; ``require_ci`` adopts a
    change only when that CI's lower bound is above 0.
    """
    t0 = time.perf_counter()
    name = str(model.identity.get("name", "in-memory model"))
    base = {"model": name, **settings}
    space = replace(space, outputs=output_layers(space.outputs, model.num_layers))
    check_space(space, model.num_layers, name)
    data = dev_data(data_dir, limit, subsample, progress=progress)
    scorer = DevScorer(model, data, space.outputs, base, use_cache=use_cache, progress=progress)
    best, best_score, trace = coordinate_ascent(scorer, space, rounds, progress, require_ci=require_ci,
                                                ci_resamples=ci_resamples, ci_seed=ci_seed)
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
        require_ci=require_ci,
        ci={"resamples": ci_resamples, "seed": ci_seed, "level": DEFAULT_LEVEL},
    )
