"""STS scoring: Spearman x100 between cosine similarity and gold scores.

Mirrors SentEval (SimCSE fork): per-subset Pearson/Spearman, plus
``all`` (one correlation over all subsets pooled -- the paper's STS12-16 number),
``mean`` (plain average of per-subset values) and ``wmean`` (weighted by pair count).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

from ._embeddings import EncodeFn, encode_unique
from .data import STSData, TaskSpec, get_spec, load_task

Lookup = Callable[[Sequence[str]], np.ndarray]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64; a zero vector gives 0 (SentEval's nan_to_num)."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    b = np.nan_to_num(np.asarray(b, dtype=np.float64))
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(num / den)


def spearman100(sys: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman rank correlation x100 (NaN when undefined, e.g. constant input)."""
    if len(sys) < 2:
        return float("nan")
    return float(spearmanr(sys, gold)[0]) * 100.0


def pearson100(sys: Sequence[float], gold: Sequence[float]) -> float:
    """Pearson correlation x100 (NaN when undefined)."""
    sys_a, gold_a = np.asarray(sys, float), np.asarray(gold, float)
    if len(sys_a) < 2 or np.ptp(sys_a) == 0 or np.ptp(gold_a) == 0:
        return float("nan")
    return float(pearsonr(sys_a, gold_a)[0]) * 100.0


def summarize(subsets: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """SentEval's STS summary from ``{subset: (system_scores, gold_scores)}``.

    Returns per-subset spearman/pearson/n and the ``all``/``mean``/``wmean`` aggregates
    (all values x100). ``all`` pools every pair into one correlation.
    """
    per: dict[str, dict] = {}
    for name, (sys, gold) in subsets.items():
        per[name] = {"spearman": spearman100(sys, gold), "pearson": pearson100(sys, gold),
                     "n": int(len(gold))}
    sys_all = np.concatenate([np.asarray(s, float) for s, _ in subsets.values()])
    gold_all = np.concatenate([np.asarray(g, float) for _, g in subsets.values()])
    weights = np.array([v["n"] for v in per.values()], dtype=float)
    out: dict = {"subsets": per, "n_pairs": int(len(gold_all))}
    for metric, fn in (("spearman", spearman100), ("pearson", pearson100)):
        vals = np.array([v[metric] for v in per.values()], dtype=float)
        out[metric] = {
            "all": fn(sys_all, gold_all),
            "mean": float(np.mean(vals)),
            "wmean": float(np.average(vals, weights=weights)) if weights.sum() else float("nan"),
        }
    return out


def score_sts(data: STSData, lookup: Lookup) -> dict:
    """Score one loaded STS task with precomputed embeddings.

    ``score`` is Spearman x100: the pooled ``all`` value for STS12-16 and the single
    split's value for STS-B / SICK-R. ``pairs`` keeps, per subset, every pair's cosine and gold
    score (``{"cosine": array, "gold": array}``, in file order) for confidence intervals
    (:mod:`tpembed.evaluation.bootstrap`); result JSONs carry them, so intervals need no re-encoding.
    """
    pairs = {name: (cosine_rows(lookup(s.sent1), lookup(s.sent2)), s.gold)
             for name, s in data.subsets.items()}
    res = summarize(pairs)
    res["pairs"] = {name: {"cosine": sims, "gold": np.asarray(gold, dtype=np.float64)}
                    for name, (sims, gold) in pairs.items()}
    res["score"] = res["spearman"]["all"]
    res["task"] = data.spec.name
    res["protocol"] = data.spec.protocol
    return res


def evaluate_sts(task: str | TaskSpec, data_dir: str | os.PathLike[str] | None,
                 encode_fn: EncodeFn, limit: int | None = None) -> dict:
    """Load ``task``, encode its distinct sentences in one call, and score it.

    Returns ``{"score", "spearman": {all, mean, wmean}, "pearson": {...},
    "subsets": {name: {spearman, pearson, n}}, "n_pairs", "pairs", ...}``; scores are x100.
    ``limit=N`` keeps the first N scored pairs per subset.
    """
    spec = get_spec(task)
    if spec.kind != "sts":
        raise ValueError(f"{spec.name} is a {spec.kind} task, not an STS task")
    data = load_task(spec, data_dir, limit)
    if not isinstance(data, STSData):
        raise TypeError(f"{spec.name}: reader did not return STS data")
    table = encode_unique(data.sentences(), encode_fn)
    return score_sts(data, table)
