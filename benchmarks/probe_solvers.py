"""Time the TREC probe's solvers on a named config's cached embeddings (one fit per setting).

Fits TREC's training set (SentEval order, 90% of it; the other 10% scores it) at two C values:
the multinomial model with newton-cholesky and with newton-cg at two tolerances, and the
one-vs-rest probe tpembed uses. For the multinomial fits it prints the objective
C * sum(log loss) + |W|^2 / 2, so a solver that stops early shows as a larger value.

    OMP_NUM_THREADS=1 python benchmarks/probe_solvers.py smollm2-135m --set task_set=transfer --set dtype=bfloat16

The embeddings must already be cached (`benchmarks/fill_cache.py` or a `tpembed run`).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from tpembed.embedding_cache import EmbeddingCache, cached, default_cache_dir
from tpembed.config import default_config_path, parse_overrides, resolve_run_config
from tpembed.encoder import Encoder
from tpembed.evaluation._embeddings import encode_unique
from tpembed.evaluation.data import get_spec, load_task
from tpembed.evaluation.transfer import _fit_raw, features
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.identity import cache_namespace


def trec_train(name: str, overrides: list[str], data: str | None) -> tuple[np.ndarray, np.ndarray]:
    """TREC's training features from the embedding cache (refuses to encode)."""
    config = resolve_run_config(default_config_path(), name, parse_overrides(overrides))
    encoder = Encoder(config=config.encoder_config())

    def not_cached(sentences: list[str]) -> np.ndarray:
        raise RuntimeError(f"{len(sentences)} TREC sentences are not cached; fill the cache first")

    lookup = cached(not_cached, EmbeddingCache(default_cache_dir() / "embeddings", cache_namespace(encoder)))
    task = load_task(get_spec("TREC"), data or default_data_dir(), None)
    X, y = features(task.splits["train"], encode_unique(task.sentences(), lookup))
    return X.astype(np.float64), y


def multinomial_objective(clf: LogisticRegression, X: np.ndarray, y: np.ndarray, C: float) -> float:
    proba = clf.predict_proba(X)[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    return float(0.5 * np.sum(clf.coef_ ** 2) - C * np.sum(np.log(proba)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="entry of configs/config.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    parser.add_argument("--data", default=None, help="SentEval folder")
    args = parser.parse_args()
    X, y = trec_train(args.name, args.overrides, args.data)
    train = np.arange(len(y)) % 10 != 0
    print(f"TREC train {X.shape}, fit on {train.sum()}, scored on {(~train).sum()}")
    for C in (0.5, 32.0):
        start = time.perf_counter()
        clf, converged = _fit_raw(X[train], y[train], C, seed=0, max_iter=1000)
        seconds = time.perf_counter() - start
        print(f"C={C:<5} {'one-vs-rest (tpembed)':<28} tol=1e-04  {seconds:6.1f} s  converged={converged}  "
              f"held-out acc={100 * clf.score(X[~train], y[~train]):.2f}", flush=True)
        # the multinomial model; newton-cg at tol 1e-8 last: it is the slow one
        for label, solver, tol in (("multinomial newton-cholesky", "newton-cholesky", 1e-4),
                                   ("multinomial newton-cg", "newton-cg", 1e-4),
                                   ("multinomial newton-cg", "newton-cg", 1e-8)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                start = time.perf_counter()
                clf = LogisticRegression(C=C, solver=solver, tol=tol, max_iter=1000).fit(X[train], y[train])
                seconds = time.perf_counter() - start
            print(f"C={C:<5} {label:<28} tol={tol:.0e}  {seconds:6.1f} s  converged={not caught}  "
                  f"objective={multinomial_objective(clf, X[train], y[train], C):.3f}  "
                  f"held-out acc={100 * clf.score(X[~train], y[~train]):.2f}", flush=True)

if __name__ == "__main__":
    main()
