"""Recipe search on STS-B dev: prompt (or ensemble) x TP range x Contrastive Prompting x output layers.

Strategy: **coordinate ascent**. Start from the first option of every axis (at the start row's
best single output layer); then, axis after axis (prompts, TP range, CP layer, CP alpha, output
layers), try every option with the other axes held, keep the best (ties keep the current value),
and repeat for ``rounds`` or until a round changes nothing. The full product is never run.

What makes it cheap on 2 CPU cores:

- A *row* is one single prompt method under one plan (TP range, CP setting). One pass over the dev
  sentences captures every candidate output layer (``Encoder.encode_layers``), so choosing output
  layers or a layer window costs no forward pass.
- An ensemble is scored from its members' rows (the Encoder's own combination, ``ensemble_mean``),
  so ``cot+ke`` costs nothing once ``cot`` and ``ke`` ran under that plan.
- Rows go through the embedding cache (the namespaces ``tpembed run`` uses), so an interrupted
  search resumes, a rerun is free, and the chosen recipe's later ``run`` reuses nothing it should not.
- ``subsample`` scores on evenly spaced dev pairs (every genre of STS-B dev), for early looks.

A candidate's score equals ``tpembed eval`` of its settings on the same pairs (tested). Never
touches a test set.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from .levers.aggregate import ensemble_mean, layer_mean
from .config import EncoderConfig, RunConfig, load_config_file
from .encoder import Encoder
from .evaluation import ensure_senteval, load_task, score_sts
from .evaluation.data import STSData, STSSubset
from .models import LoadedModel
from .sweep import DEV_TASK, _encode_row, _yaml_entry

Plan = tuple[int, int] | None  # TP range [start, exit), None = vanilla
AXES = ("prompts", "demo", "tp", "cp_layer", "cp_alpha", "pooling", "layers")


@dataclass(frozen=True)
class Candidate:
    """One recipe: ensemble members, TP range, CP setting, averaged output layers."""

    prompts: tuple[str, ...]
    tp: Plan
    cp_layer: int | None
    cp_alpha: float
    layers: tuple[int, ...]
    pooling: str = "last_token"
    demo: str | None = None

    def settings(self, cp_mode: str) -> dict[str, Any]:
        """The recipe as EncoderConfig fields."""
        plan: dict[str, Any] = (
            {"use_which_plan": "vanilla", "tp_starting_index": 0, "tp_exiting_index": 0}
            if self.tp is None
            else {"use_which_plan": "tp", "tp_starting_index": self.tp[0], "tp_exiting_index": self.tp[1]}
        )
        return {
            "prompt_method": list(self.prompts) if len(self.prompts) > 1 else self.prompts[0],
            **plan,
            "output_layer": list(self.layers) if len(self.layers) > 1 else self.layers[0],
            "cp_layer": self.cp_layer,
            "cp_alpha": self.cp_alpha,
            "cp_mode": cp_mode,
            "pooling": self.pooling,
            "demonstration": self.demo,
        }

    def label(self) -> str:
        """A short human-readable description."""
        tp = "vanilla" if self.tp is None else f"TP[{self.tp[0]},{self.tp[1]})"
        cp = "CP off" if self.cp_layer is None else f"CP@{self.cp_layer}x{self.cp_alpha:g}"
        layers = ",".join(map(str, self.layers))
        pooling = "" if self.pooling == "last_token" else f" | {self.pooling}"
        demo = "" if self.demo is None else f" (1-shot {self.demo})"
        return f"{'+'.join(self.prompts)}{demo} | {tp} | {cp}{pooling} | layers {layers}"


@dataclass
class SearchSpace:
    """The options of each axis; the first option of each is the starting point."""

    prompts: list[tuple[str, ...]] = field(default_factory=lambda: [("prompteol",)])
    tp: list[Plan] = field(default_factory=lambda: [None])
    cp_layers: list[int | None] = field(default_factory=lambda: [None])
    cp_alphas: list[float] = field(default_factory=lambda: [1.0])
    cp_mode: str = "ns"
    poolings: list[str] = field(default_factory=lambda: ["last_token"])
    demos: list[str | None] = field(default_factory=lambda: [None])
    outputs: list[int] = field(default_factory=list)  # candidate single output layers (HF numbering)
    max_window: int = 1  # layer options: every run of 1..max_window consecutive candidate layers

    def layer_options(self) -> list[tuple[int, ...]]:
        """Single layers and windows of consecutive layers, all from the same rows."""
        out = []
        for width in range(1, self.max_window + 1):
            for i in range(len(self.outputs) - width + 1):
                window = tuple(self.outputs[i : i + width])
                if window[-1] - window[0] == width - 1:
                    out.append(window)
        return out

    def options(self, axis: str, current: Candidate) -> list[Any]:
        """What axis ``axis`` may take (CP alpha only matters while CP is on)."""
        if axis == "prompts":
            return list(self.prompts)
        if axis == "tp":
            return list(self.tp)
        if axis == "cp_layer":
            return list(self.cp_layers)
        if axis == "cp_alpha":
            return list(self.cp_alphas) if current.cp_layer is not None else []
        if axis == "demo":
            return list(self.demos)
        if axis == "pooling":
            return list(self.poolings)
        if axis == "layers":
            return self.layer_options()
        raise ValueError(f"unknown axis {axis!r}")


def parse_prompt_options(text: str) -> list[tuple[str, ...]]:
    """``"prompteol,cot,ke,cot+ke"`` -> ``[("prompteol",), ("cot",), ("ke",), ("cot", "ke")]`` (checked)."""
    out = []
    for part in text.split(","):
        members = tuple(m.strip() for m in part.split("+") if m.strip())
        if members:
            EncoderConfig(prompt_method=list(members))  # a clear error for an unknown name
            out.append(members)
    if not out:
        raise ValueError(f"no prompt options in {text!r}")
    return out


def parse_tp_options(text: str) -> list[Plan]:
    """``"vanilla,1-2,1-3"`` -> ``[None, (1, 2), (1, 3)]`` (TP before decoder layers [start, exit))."""
    out: list[Plan] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part in ("vanilla", "off", "none"):
            out.append(None)
            continue
        try:
            start, exit_layer = (int(x) for x in part.split("-"))
        except ValueError:
            raise ValueError(f"TP option {part!r}: use vanilla or START-EXIT, e.g. 1-2") from None
        if not 0 <= start < exit_layer:
            raise ValueError(f"TP option {part!r}: need 0 <= START < EXIT")
        out.append((start, exit_layer))
    if not out:
        raise ValueError(f"no TP options in {text!r}")
    return out


def parse_cp_layers(text: str) -> list[int | None]:
    """``"off,2,4"`` -> ``[None, 2, 4]`` (decoder layers, 0-based)."""
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("off", "none"):
            out.append(None)
        elif part:
            try:
                out.append(int(part))
            except ValueError:
                raise ValueError(f"CP layer {part!r}: use off or a decoder layer number") from None
    if not out:
        raise ValueError(f"no CP layer options in {text!r}")
    return out


def parse_floats(text: str) -> list[float]:
    """``"0.5,1"`` -> ``[0.5, 1.0]``."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"cannot read numbers from {text!r}") from None
    if not values:
        raise ValueError(f"no values in {text!r}")
    return values


def dev_pairs(data_dir: Any, limit: int | None = None, subsample: int | None = None) -> STSData:
    """STS-B dev (first ``limit`` pairs), optionally ``subsample`` evenly spaced pairs of it."""
    data = load_task(DEV_TASK, data_dir, limit)
    assert isinstance(data, STSData)
    if subsample is None:
        return data
    (name, full), = data.subsets.items()
    if subsample < 2:
        raise ValueError("subsample needs at least 2 pairs")
    keep = sorted(set(np.linspace(0, len(full) - 1, min(subsample, len(full))).round().astype(int).tolist()))
    part = STSSubset(name, [full.sent1[i] for i in keep], [full.sent2[i] for i in keep], full.gold[keep])
    return STSData(data.spec, {name: part})


RowKey = tuple[str, Plan, "int | None", "float | None", str, "str | None"]


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
    base_settings: dict[str, Any]

    def ranked(self) -> list[Evaluation]:
        """Distinct candidates, best first."""
        seen: dict[Candidate, Evaluation] = {}
        for e in self.evaluations:
            seen.setdefault(e.candidate, e)
        return sorted(seen.values(), key=lambda e: -e.spearman)

    def run_config(self, candidate: Candidate | None = None) -> RunConfig:
        """A candidate (default: the best) as a RunConfig for the 7 STS test tasks."""
        settings = (candidate or self.best).settings(self.space.cp_mode)
        return RunConfig(**{**self.base_settings, **settings, "mode": "test", "task_set": "sts"})


class DevScorer:
    """Scores candidates on STS-B dev from per-row, per-layer vectors (rows memoised, cached on disk)."""

    def __init__(
        self,
        loaded: LoadedModel,
        data: STSData,
        space: SearchSpace,
        base: dict[str, Any],
        *,
        use_cache: bool = True,
        progress: bool = True,
        max_rows_in_memory: int = 8,
    ) -> None:
        self.loaded, self.data, self.space, self.base = loaded, data, space, base
        self.use_cache, self.progress = use_cache, progress
        self.sentences = list(dict.fromkeys(data.sentences()))
        self.row_of = {s: i for i, s in enumerate(self.sentences)}
        self._rows: OrderedDict[RowKey, dict[int, np.ndarray]] = OrderedDict()
        self._max_rows = max_rows_in_memory
        self._scores: dict[Candidate, float] = {}
        self.rows_encoded = 0

    def _row(
        self, method: str, plan: Plan, cp_layer: int | None, cp_alpha: float, pooling: str, demo: str | None
    ) -> dict[int, np.ndarray]:
        key: RowKey = (method, plan, cp_layer, cp_alpha if cp_layer is not None else None, pooling, demo)
        if key in self._rows:
            self._rows.move_to_end(key)
            return self._rows[key]
        candidate = Candidate((method,), plan, cp_layer, cp_alpha, (self.space.outputs[0],), pooling, demo)
        config = EncoderConfig(**{**self.base, **candidate.settings(self.space.cp_mode)})
        encoder = Encoder(self.loaded, config=config)
        before = _forward_count(self.loaded)
        vectors = _encode_row(encoder, self.sentences, self.space.outputs, self.use_cache, self.progress)
        self.rows_encoded += _forward_count(self.loaded) > before
        self._rows[key] = vectors
        while len(self._rows) > self._max_rows:
            self._rows.popitem(last=False)
        return vectors

    def vectors(self, candidate: Candidate) -> np.ndarray:
        """The candidate's embeddings of ``self.sentences``, combined exactly as the Encoder does."""
        rows = [
            self._row(m, candidate.tp, candidate.cp_layer, candidate.cp_alpha, candidate.pooling, candidate.demo)
            for m in candidate.prompts
        ]
        return layer_mean([ensemble_mean([row[k] for row in rows]) for k in candidate.layers])

    def score(self, candidate: Candidate) -> float:
        """STS-B dev Spearman x100 of ``candidate`` (the score ``tpembed eval`` gives on these pairs)."""
        if candidate not in self._scores:
            vectors = self.vectors(candidate)
            result = score_sts(self.data, lambda batch: vectors[[self.row_of[s] for s in batch]])
            self._scores[candidate] = float(result["score"])
        return self._scores[candidate]


def _forward_count(loaded: LoadedModel) -> int:
    return getattr(loaded.model, "_tpembed_forward_calls", 0)


def _count_forwards(loaded: LoadedModel) -> Callable[[], None]:
    """Count model forward calls (a row whose vectors all came from the cache makes none)."""
    loaded.model._tpembed_forward_calls = 0  # type: ignore[attr-defined]

    def bump(*_: Any) -> None:
        loaded.model._tpembed_forward_calls += 1  # type: ignore[attr-defined]

    return loaded.model.register_forward_pre_hook(bump).remove


def coordinate_ascent(scorer: DevScorer, space: SearchSpace, rounds: int = 2, progress: bool = True) -> tuple[
    Candidate, float, list[Evaluation]
]:
    """The search itself (see the module docstring); returns the best candidate, its score and the trace."""
    start = Candidate(
        space.prompts[0], space.tp[0], space.cp_layers[0], space.cp_alphas[0], (space.outputs[-1],), space.poolings[0],
        space.demos[0],
    )
    trace: list[Evaluation] = []

    def visit(candidate: Candidate, rnd: int, axis: str) -> float:
        score = scorer.score(candidate)
        trace.append(Evaluation(len(trace), rnd, axis, candidate, score))
        return score

    # the start row's best single output layer (free: one row gives them all)
    current, best = start, visit(start, 0, "start")
    for layers in [(k,) for k in space.outputs]:
        score = visit(replace(start, layers=layers), 0, "start")
        if score > best:
            current, best = replace(start, layers=layers), score
    bar = tqdm(total=rounds * len(AXES), desc="search", unit="axis", disable=not progress)
    for rnd in range(1, rounds + 1):
        changed = False
        for axis in AXES:
            bar.set_postfix_str(f"round {rnd}, {axis}: {best:.2f}")
            for option in space.options(axis, current):
                candidate = replace(current, **{axis: option})
                score = visit(candidate, rnd, axis)
                if score > best:
                    current, best, changed = candidate, score, True
            bar.update(1)
        if not changed:
            break
    bar.close()
    return current, best, trace


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
    **settings: Any,
) -> SearchResult:
    """Coordinate ascent on STS-B dev for ``model``; ``settings`` are further EncoderConfig fields."""
    t0 = time.perf_counter()
    name = str(model.identity.get("name", "in-memory model"))
    base = {"model": name, **settings}
    check_space(space, model.num_layers)
    data_dir = ensure_senteval(data_dir, [DEV_TASK], progress=progress)
    data = dev_pairs(data_dir, limit, subsample)
    scorer = DevScorer(model, data, space, base, use_cache=use_cache, progress=progress)
    stop_counting = _count_forwards(model)
    try:
        best, best_score, trace = coordinate_ascent(scorer, space, rounds, progress)
    finally:
        stop_counting()
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


def check_space(space: SearchSpace, num_layers: int) -> None:
    """Clear errors for options the model cannot run (before any pass)."""
    bad_tp = [p for p in space.tp if p is not None and p[1] > num_layers]
    if bad_tp:
        raise ValueError(f"TP options {bad_tp} end beyond the model's {num_layers} decoder layers")
    bad_cp = [k for k in space.cp_layers if k is not None and not 0 <= k < num_layers]
    if bad_cp:
        raise ValueError(f"CP layers {bad_cp} are not decoder layers 0..{num_layers - 1}")
    if not space.outputs or any(not 1 <= k <= num_layers for k in space.outputs):
        raise ValueError(f"output layers must be in 1..{num_layers} (HF hidden_states numbering), got {space.outputs}")
    bad_pooling = [p for p in space.poolings if p not in ("last_token", "attention_sum")]
    if bad_pooling:
        raise ValueError(f"pooling options {bad_pooling}: use last_token or attention_sum")
    for demo in space.demos:
        if demo is not None:
            EncoderConfig(demonstration=demo)  # a clear error for a bad one
    if space.max_window < 1:
        raise ValueError("max_window must be >= 1")


# ---- ablation and cost ---------------------------------------------------------------------------


def ablation(scorer: DevScorer, recipe: Candidate, vanilla_layers: Sequence[int]) -> list[tuple[str, Candidate, float]]:
    """The recipe, the recipe minus each lever it uses, and vanilla PromptEOL at the model's last layer
    and at its dev-best layer among ``vanilla_layers`` and the last one.

    ``scorer.space.outputs`` must hold every layer scored here (its rows are encoded at those layers)."""
    last_layer = scorer.loaded.num_layers
    missing = sorted((set(recipe.layers) | set(vanilla_layers) | {last_layer}) - set(scorer.space.outputs))
    if missing:
        raise ValueError(f"the scorer's output layers {scorer.space.outputs} lack {missing}")
    rows: list[tuple[str, Candidate]] = [("recipe", recipe)]
    if len(recipe.prompts) > 1:
        rows += [(f"- ensemble (only {m})", replace(recipe, prompts=(m,))) for m in recipe.prompts]
    if recipe.tp is not None:
        rows.append(("- TP (vanilla plan)", replace(recipe, tp=None)))
    if recipe.cp_layer is not None:
        rows.append(("- CP", replace(recipe, cp_layer=None)))
    if recipe.demo is not None:
        rows.append(("- demonstration (0-shot)", replace(recipe, demo=None)))
    if recipe.pooling != "last_token":
        rows.append(("- attention sum (last-token state)", replace(recipe, pooling="last_token")))
    if len(recipe.layers) > 1:
        rows += [(f"- layer window (only {k})", replace(recipe, layers=(k,))) for k in recipe.layers]
    plain = Candidate(("prompteol",), None, None, recipe.cp_alpha, (last_layer,))
    rows.append((f"vanilla PromptEOL, last layer {last_layer}", plain))
    layers = sorted(set(vanilla_layers) | {last_layer})
    best_layer = max(layers, key=lambda k: scorer.score(replace(plain, layers=(k,))))
    rows.append((f"vanilla PromptEOL, dev-best layer {best_layer}", replace(plain, layers=(best_layer,))))
    return [(label, c, scorer.score(c)) for label, c in rows]


def time_ratio(
    loaded: LoadedModel, recipe: dict[str, Any], sentences: Sequence[str], repeats: int = 3
) -> tuple[float, list[float]]:
    """Encode time of the recipe / vanilla PromptEOL at the final layer, interleaved; (median, per-repeat ratios)."""
    vanilla = Encoder(loaded, use_which_plan="vanilla", output_layer=-1, prompt_method="prompteol")
    tuned = Encoder(loaded, config=EncoderConfig(**recipe))
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vanilla.encode(list(sentences), show_progress_bar=False)
        t1 = time.perf_counter()
        tuned.encode(list(sentences), show_progress_bar=False)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return float(np.median(ratios)), ratios


# ---- outputs -------------------------------------------------------------------------------------


def write_outputs(result: SearchResult, out_dir: Path, name: str | None = None) -> dict[str, Path]:
    """grid.csv (every evaluation in order), ranked.csv (distinct candidates, best first),
    search.json (trace + settings) and best.yaml (the winner, read back to check ``tpembed run`` accepts it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f for k, f in
             (("grid", "grid.csv"), ("ranked", "ranked.csv"), ("json", "search.json"), ("yaml", "best.yaml"))}
    columns = ["prompts", "demo", "tp", "cp_layer", "cp_alpha", "pooling", "layers", "spearman"]

    def cells(c: Candidate, score: float) -> list[Any]:
        tp = "vanilla" if c.tp is None else f"{c.tp[0]}-{c.tp[1]}"
        cp = "off" if c.cp_layer is None else c.cp_layer
        return ["+".join(c.prompts), c.demo or "", tp, cp, c.cp_alpha if c.cp_layer is not None else "", c.pooling,
                ",".join(map(str, c.layers)), f"{score:.4f}"]

    with paths["grid"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "round", "axis", *columns])
        for e in result.evaluations:
            writer.writerow([e.step, e.round, e.axis, *cells(e.candidate, e.spearman)])
    with paths["ranked"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", *columns])
        for i, e in enumerate(result.ranked(), 1):
            writer.writerow([i, *cells(e.candidate, e.spearman)])
    payload = {
        "model": result.model,
        "space": asdict(result.space),
        "best": {"label": result.best.label(), "spearman": result.best_score,
                 "settings": result.best.settings(result.space.cp_mode)},
        "n_pairs": result.n_pairs, "n_sentences": result.n_sentences, "rows_encoded": result.rows_encoded,
        "seconds": result.seconds,
        "evaluations": [{"step": e.step, "round": e.round, "axis": e.axis, "label": e.candidate.label(),
                         "spearman": e.spearman} for e in result.evaluations],
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")
    stem = name or f"{Path(result.model.rstrip('/')).stem or 'model'}-search"
    entry = f"{stem}-best"
    header = (
        f"# written by `tpembed search` from STS-B dev ({result.n_pairs} pairs; never a test set): {result.model}\n"
        f"# best dev Spearman x100: {result.best_score:.2f} ({result.best.label()})\n"
        f"# run it with: tpembed run {entry} --config {paths['yaml']}\n"
    )
    document = {"default_config": entry, "models": {entry: _yaml_entry(result.run_config())}}
    paths["yaml"].write_text(header + yaml.safe_dump(document, sort_keys=False))
    load_config_file(paths["yaml"])
    return paths


def format_ranked(result: SearchResult, top: int = 10) -> str:
    """The best ``top`` candidates as text."""
    lines = [f"{'dev':>7}  candidate"]
    lines += [f"{e.spearman:7.2f}  {e.candidate.label()}" for e in result.ranked()[:top]]
    return "\n".join(lines)
