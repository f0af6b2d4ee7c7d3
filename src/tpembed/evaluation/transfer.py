"""Transfer tasks: logistic-regression probe on frozen embeddings (SentEval protocol).

SentEval's three validation schemes, with its scikit-learn branch (``usepytorch=False``):

* MR, CR, SUBJ, MPQA -- ``InnerKFoldClassifier``: stratified k-fold; inside each
  training fold, C in 2**[-2..3] is chosen by a second stratified k-fold, refit on the
  whole training fold, scored on the held-out fold. Score = mean fold accuracy.
* SST2 -- ``SplitClassifier``: C in 2**[-2..3] chosen on dev, model fit on train, test accuracy.
* TREC, MRPC -- ``KFoldClassifier``: C in 2**[-1..5] (SentEval uses a different grid
  here) chosen by k-fold CV on train, refit on train, test accuracy. MRPC features are
  ``concat(|u-v|, u*v)``; MRPC also reports F1.

Like SentEval: features are not standardised, examples are ordered by
(length in tokens, label) before splitting, mean accuracies are rounded to 2 decimals
before the argmax over C (first maximum = smallest C wins ties), and per-fold test
accuracies are rounded to 2 decimals.

Solver: every fit minimises an L2-penalised logistic loss (C as above; the intercept is
not penalised, as in scikit-learn since 0.22 -- SentEval's liblinear penalised it) to its
optimum. The default solver is "newton-cholesky", not lbfgs: raw LLM hidden states are badly
conditioned (a few dimensions are 10-100x the others), so lbfgs stops at its iteration cap
short of the optimum, while a few Newton steps reach it
(tests/evaluation/test_eval_transfer.py checks the optimum on such features).

Multiclass (TREC, 6 classes) is one-vs-rest, as SentEval's ``LogisticRegression(C=...)``
was with the scikit-learn of its day (``multi_class="ovr"`` was the default before 0.22).
It also keeps Newton affordable: each binary Hessian is (d+1)^2, where the multinomial one
is (6(d+1))^2 -- 4.8 GB for a 4096-dim Llama hidden state.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from tqdm.auto import tqdm

from ._embeddings import EncodeFn, encode_unique
from .data import TaskSpec, TransferData, TransferSplit, get_spec, load_task

Lookup = Callable[[Sequence[str]], np.ndarray]

C_GRID: tuple[float, ...] = tuple(2.0 ** t for t in range(-2, 4))
"""InnerKFoldClassifier / SplitClassifier grid (SentEval, sklearn branch)."""
C_GRID_KFOLD: tuple[float, ...] = tuple(2.0 ** t for t in range(-1, 6))
"""KFoldClassifier grid (SentEval, sklearn branch) -- used for TREC and MRPC."""
DEFAULT_MAX_ITER = 1000
DEFAULT_SOLVER = "newton-cholesky"


@dataclass(frozen=True)
class ProbeConfig:
    """Settings shared by all probe fits."""

    seed: int = 0
    max_iter: int = DEFAULT_MAX_ITER
    progress: bool = False
    n_jobs: int | None = None  # joblib workers for the C x fold grid (None = 1)
    solver: str = DEFAULT_SOLVER


class _FitCounter:
    """Counts fits and non-converged fits (lbfgs on raw LLM features can be slow to converge)."""

    def __init__(self) -> None:
        self.fits = 0
        self.not_converged = 0


Probe = LogisticRegression | OneVsRestClassifier


def _fit_raw(X: np.ndarray, y: np.ndarray, C: float, seed: int, max_iter: int,
             solver: str = DEFAULT_SOLVER) -> tuple[Probe, bool]:
    """Fit one LR (one-vs-rest for more than two classes); returns (model, converged)."""
    # float64 as in SentEval's day: recent scikit-learn keeps float32 input in float32, where
    # the Newton Hessian of raw hidden states is too ill-conditioned and it falls back to lbfgs.
    X = np.asarray(X, dtype=np.float64)
    clf: Probe = LogisticRegression(C=C, max_iter=max_iter, random_state=seed, solver=solver)
    if np.unique(y).size > 2:
        clf = OneVsRestClassifier(clf)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    return clf, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _fit(X: np.ndarray, y: np.ndarray, C: float, cfg: ProbeConfig,
         counter: _FitCounter) -> Probe:
    clf, ok = _fit_raw(X, y, C, cfg.seed, cfg.max_iter, cfg.solver)
    counter.fits += 1
    counter.not_converged += not ok
    return clf


def _fold_acc(X: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, C: float,
              seed: int, max_iter: int, solver: str) -> tuple[float, bool]:
    clf, ok = _fit_raw(X[tr], y[tr], C, seed, max_iter, solver)
    return _acc100(clf, X[te], y[te]), ok


def _acc100(clf: Probe, X: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(clf.score(X, y))


def _skf(k: int, seed: int) -> StratifiedKFold:
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def cv_select_c(X: np.ndarray, y: np.ndarray, c_grid: Sequence[float], kfold: int,
                cfg: ProbeConfig, counter: _FitCounter | None = None) -> tuple[float, float]:
    """Pick C by stratified k-fold CV on (X, y); returns (best C, its mean accuracy x100).

    Mean accuracies are rounded to 2 decimals and the first maximum wins, as in SentEval.
    """
    counter = counter or _FitCounter()
    folds = list(_skf(kfold, cfg.seed).split(X, y))
    jobs = [(C, tr, te) for C in c_grid for tr, te in folds]
    out = Parallel(n_jobs=cfg.n_jobs)(
        delayed(_fold_acc)(X, y, tr, te, C, cfg.seed, cfg.max_iter, cfg.solver) for C, tr, te in jobs)
    counter.fits += len(out)
    counter.not_converged += sum(not ok for _, ok in out)
    accs = np.array([a for a, _ in out]).reshape(len(c_grid), len(folds))
    scores = [round(float(m), 2) for m in accs.mean(axis=1)]
    best = int(np.argmax(scores))
    return float(c_grid[best]), float(scores[best])


def inner_kfold_probe(X: np.ndarray, y: np.ndarray, kfold: int = 10,
                      cfg: ProbeConfig = ProbeConfig(),
                      c_grid: Sequence[float] = C_GRID) -> dict:
    """SentEval InnerKFoldClassifier: outer k-fold test, inner k-fold choice of C.

    Returns ``{"acc", "devacc", "fold_acc", "C", "kfold", "fits", "not_converged"}``.
    """
    counter = _FitCounter()
    fold_acc, fold_dev, chosen = [], [], []
    outer = list(_skf(kfold, cfg.seed).split(X, y))
    for tr, te in tqdm(outer, desc="folds", leave=False, disable=not cfg.progress):
        C, dev = cv_select_c(X[tr], y[tr], c_grid, kfold, cfg, counter)
        clf = _fit(X[tr], y[tr], C, cfg, counter)
        fold_acc.append(round(_acc100(clf, X[te], y[te]), 2))
        fold_dev.append(dev)
        chosen.append(C)
    return {"acc": float(np.mean(fold_acc)), "devacc": float(np.mean(fold_dev)),
            "fold_acc": fold_acc, "C": chosen, "kfold": kfold,
            "fits": counter.fits, "not_converged": counter.not_converged}


def split_probe(train: tuple[np.ndarray, np.ndarray], dev: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray], cfg: ProbeConfig = ProbeConfig(),
                c_grid: Sequence[float] = C_GRID) -> dict:
    """SentEval SplitClassifier: choose C on dev, fit on train, report test accuracy."""
    counter = _FitCounter()
    scores = []
    for C in tqdm(c_grid, desc="C grid", leave=False, disable=not cfg.progress):
        scores.append(round(_acc100(_fit(*train, C, cfg, counter), *dev), 2))
    best = int(np.argmax(scores))
    clf = _fit(*train, c_grid[best], cfg, counter)
    return {"acc": round(_acc100(clf, *test), 2), "devacc": float(scores[best]),
            "C": float(c_grid[best]), "dev_scores": scores,
            "fits": counter.fits, "not_converged": counter.not_converged}


def kfold_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                kfold: int = 10, cfg: ProbeConfig = ProbeConfig(),
                c_grid: Sequence[float] = C_GRID_KFOLD) -> dict:
    """SentEval KFoldClassifier: choose C by k-fold CV on train, refit on train, test."""
    counter = _FitCounter()
    C, dev = cv_select_c(*train, c_grid, kfold, cfg, counter)
    clf = _fit(*train, C, cfg, counter)
    pred = clf.predict(test[0])
    return {"acc": round(100.0 * float(np.mean(pred == test[1])), 2), "devacc": dev,
            "C": C, "kfold": kfold, "pred": pred,
            "fits": counter.fits, "not_converged": counter.not_converged}


# --------------------------------------------------------------------------- features


def _senteval_order(split: TransferSplit) -> list[int]:
    # SentEval sorts by (n tokens, [n tokens b,] label) before splitting; stable sort.
    def key(i: int) -> tuple:
        k: tuple = (len(split.text[i].split()),)
        if split.text_b is not None:
            k += (len(split.text_b[i].split()),)
        return k + (int(split.labels[i]),)
    return sorted(range(len(split)), key=key)


def features(split: TransferSplit, lookup: Lookup) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for a split in SentEval order; pairs give concat(|u-v|, u*v)."""
    order = _senteval_order(split)
    y = split.labels[order]
    u = lookup([split.text[i] for i in order])
    if split.text_b is None:
        return u, y
    v = lookup([split.text_b[i] for i in order])
    return np.concatenate([np.abs(u - v), u * v], axis=1), y


def score_transfer(data: TransferData, lookup: Lookup, kfold: int = 10, seed: int = 0,
                   max_iter: int = DEFAULT_MAX_ITER, progress: bool = False,
                   n_jobs: int | None = None) -> dict:
    """Score one loaded transfer task with precomputed embeddings.

    ``score`` is test accuracy x100 (``devacc`` is the validation accuracy SentEval
    reports in dev mode).
    """
    cfg = ProbeConfig(seed=seed, max_iter=max_iter, progress=progress, n_jobs=n_jobs)
    spec = data.spec
    if spec.protocol == "inner-kfold":
        res = inner_kfold_probe(*features(data.splits["all"], lookup), kfold=kfold, cfg=cfg)
    elif spec.protocol == "split":
        s = data.splits
        res = split_probe(features(s["train"], lookup), features(s["dev"], lookup),
                          features(s["test"], lookup), cfg=cfg)
    elif spec.protocol == "kfold":
        test = features(data.splits["test"], lookup)
        res = kfold_probe(features(data.splits["train"], lookup), test, kfold=kfold, cfg=cfg)
        pred = res.pop("pred")
        if spec.name == "MRPC":
            res["f1"] = round(100.0 * float(f1_score(test[1], pred)), 2)
    else:
        raise ValueError(f"{spec.name}: unknown transfer protocol {spec.protocol!r}")
    res.update(score=float(res["acc"]), task=spec.name, protocol=spec.protocol,
               n=data.counts(), seed=seed, solver=cfg.solver)
    return res


def evaluate_transfer(task: str | TaskSpec, data_dir: str | os.PathLike[str] | None,
                      encode_fn: EncodeFn, kfold: int = 10, seed: int = 0,
                      limit: int | None = None, *, max_iter: int = DEFAULT_MAX_ITER,
                      progress: bool = False, n_jobs: int | None = None) -> dict:
    """Load ``task``, encode its distinct sentences in one call, and run the probe.

    Returns ``{"score": test acc x100, "acc", "devacc", "C", ...}`` (MRPC adds ``f1``).
    """
    spec = get_spec(task)
    if spec.kind != "transfer":
        raise ValueError(f"{spec.name} is a {spec.kind} task, not a transfer task")
    if kfold < 2:
        raise ValueError(f"kfold must be >= 2, got {kfold}")
    data = load_task(spec, data_dir, limit)
    if not isinstance(data, TransferData):
        raise TypeError(f"{spec.name}: reader did not return transfer data")
    table = encode_unique(data.sentences(), encode_fn)
    return score_transfer(data, table, kfold=kfold, seed=seed, max_iter=max_iter,
                          progress=progress, n_jobs=n_jobs)
