"""Logistic-regression probe: SentEval's three validation schemes."""

from __future__ import annotations

import numpy as np
import pytest
from joblib import parallel_backend

from tpembed.evaluation import C_GRID, C_GRID_KFOLD, evaluate_transfer, score_transfer
from tpembed.evaluation.data import TASKS, TransferData, TransferSplit
from tpembed.evaluation.transfer import (DEFAULT_MAX_ITER, ProbeConfig, _fit_raw, cv_select_c,
                                         inner_kfold_probe, kfold_probe, split_probe)


def _blobs(n: int, dim: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.standard_normal((n, dim))
    X[:, 0] += np.where(y == 1, sep, -sep)
    return X, y


def test_grids_are_senteval_grids():
    assert C_GRID == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    assert C_GRID_KFOLD == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def test_inner_kfold_separable_is_perfect():
    X, y = _blobs(200, 8, sep=6.0, seed=1)
    res = inner_kfold_probe(X, y, kfold=5)
    assert res["acc"] >= 99.0
    assert len(res["fold_acc"]) == 5 and len(res["C"]) == 5
    assert all(c in C_GRID for c in res["C"])
    assert res["fits"] == 5 * (len(C_GRID) * 5 + 1)


def test_inner_kfold_random_labels_is_chance():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 10))
    y = rng.integers(0, 2, 400)
    res = inner_kfold_probe(X, y, kfold=5)
    assert 35.0 <= res["acc"] <= 65.0


def test_parallel_grid_matches_sequential():
    X, y = _blobs(120, 5, sep=1.0, seed=7)
    seq = inner_kfold_probe(X, y, kfold=3)
    # threads: same job scheduling/reassembly as processes, without slow worker start-up
    with parallel_backend("threading"):
        par = inner_kfold_probe(X, y, kfold=3, cfg=ProbeConfig(n_jobs=2))
    assert seq["fold_acc"] == par["fold_acc"] and seq["C"] == par["C"]


def _ill_conditioned(n: int = 1000, dim: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # Like raw LLM hidden states: column scales spread over 4 orders of magnitude, large offsets.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    y = (X[:, :5].sum(axis=1) + rng.standard_normal(n) > 0).astype(int)
    return X * np.geomspace(0.01, 300, dim) + 20 * rng.standard_normal(dim), y


def test_probe_fits_reach_the_optimum_on_badly_scaled_features():
    # SentEval's objective: C * sum(logistic loss) + |w|^2 / 2, intercept unpenalised. At the
    # optimum its gradient vanishes whatever solver found it; lbfgs stops 1000 iterations short here.
    X, y = _ill_conditioned()
    # embeddings arrive as float32; the fit must still reach the float64 optimum
    for C, X_in in [(C, X) for C in C_GRID] + [(8.0, X.astype(np.float32))]:
        clf, converged = _fit_raw(X_in, y, C, seed=0, max_iter=DEFAULT_MAX_ITER)
        assert converged
        assert _relative_gradient(X, y, C, clf.coef_[0], clf.intercept_[0]) < 1e-5, C
    assert inner_kfold_probe(X, y, kfold=3)["not_converged"] == 0


def _relative_gradient(X: np.ndarray, y: np.ndarray, C: float, w: np.ndarray, b: float) -> float:
    """Largest |gradient| of C * sum(logistic loss) + |w|^2 / 2 (intercept unpenalised), relative."""
    w, b = np.asarray(w, dtype=np.float64), float(b)
    residual = 1.0 / (1.0 + np.exp(-(X @ w + b))) - y
    grad = np.append(C * X.T @ residual + w, C * residual.sum())
    scale = np.append(C * np.abs(X).T @ np.abs(residual) + np.abs(w), C * np.abs(residual).sum())
    return float(np.max(np.abs(grad) / scale))


def test_multiclass_probe_is_one_vs_rest_at_each_optimum():
    # TREC's probe: one binary problem per class (SentEval's sklearn default of its day), each
    # at its own optimum, predicting the class with the largest decision value.
    X, _ = _ill_conditioned(n=900, dim=30, seed=4)
    big4 = X[:, -4:]  # the largest-scale columns: a small C still separates them
    y = np.argmax((big4 - big4.mean(axis=0)) / big4.std(axis=0), axis=1)  # 4 classes
    clf, converged = _fit_raw(X.astype(np.float32), y, 2.0, seed=0, max_iter=DEFAULT_MAX_ITER)
    assert converged and len(clf.estimators_) == 4
    scores = np.column_stack([est.decision_function(X) for est in clf.estimators_])
    for k, est in enumerate(clf.estimators_):
        assert _relative_gradient(X, (y == k).astype(float), 2.0, est.coef_[0], est.intercept_[0]) < 1e-5, k
    np.testing.assert_array_equal(clf.predict(X), np.argmax(scores, axis=1))
    assert 100 * np.mean(clf.predict(X) == y) > 90


def test_cv_select_c_picks_the_best_grid_value():
    # 70/30 classes: with a tiny C the weights vanish and the (unpenalised) intercept
    # predicts the majority class (70%); a large C separates the blobs (~100%).
    rng = np.random.default_rng(5)
    y = (np.arange(200) % 10 < 3).astype(int)
    X = rng.standard_normal((200, 3))
    X[:, 0] += np.where(y == 1, 4.0, -4.0)
    C, score = cv_select_c(X, y, (1e-6, 1e4), kfold=4, cfg=ProbeConfig())
    assert C == 1e4 and score > 95
    C, score = cv_select_c(X, y, (1e-6,), kfold=4, cfg=ProbeConfig())
    assert score == pytest.approx(70.0)
    # ties go to the first grid value (SentEval's argmax)
    C_tie, _ = cv_select_c(*_blobs(100, 2, sep=8.0, seed=0), (0.5, 1.0, 2.0), 5, ProbeConfig())
    assert C_tie == 0.5


def test_split_probe_and_kfold_probe():
    tr, dv, te = (_blobs(150, 6, 5.0, s) for s in (1, 2, 3))
    res = split_probe(tr, dv, te)
    assert res["acc"] >= 98 and res["C"] in C_GRID and len(res["dev_scores"]) == len(C_GRID)
    res = kfold_probe(tr, te, kfold=5)
    assert res["acc"] >= 98 and res["C"] in C_GRID_KFOLD
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((300, 6)), rng.integers(0, 2, 300))
    noise_test = (rng.standard_normal((300, 6)), rng.integers(0, 2, 300))
    assert 35 <= kfold_probe(noise, noise_test, kfold=5)["acc"] <= 65


def _pair_task() -> TransferData:
    """Paraphrase iff both sentences carry the same token: needs the |u-v|, u*v features."""
    rng = np.random.default_rng(0)
    def split(n: int) -> TransferSplit:
        a, b, y = [], [], []
        for i in range(n):
            t = int(rng.integers(0, 6))
            same = i % 2
            u = t if same else (t + 1 + int(rng.integers(0, 5))) % 6
            a.append(f"tok{t} w{i}")
            b.append(f"tok{u} v{i}")
            y.append(same)
        return TransferSplit(a, np.array(y), text_b=b)
    return TransferData(TASKS["MRPC"], {"train": split(240), "test": split(120)})


def _onehot_lookup(sentences):
    out = np.zeros((len(sentences), 6))
    for i, s in enumerate(sentences):
        out[i, int(s.split()[0][3:])] = 1.0
    return out


def test_mrpc_pair_features():
    res = score_transfer(_pair_task(), _onehot_lookup, kfold=5)
    assert res["score"] >= 95 and "f1" in res and res["f1"] >= 95
    assert res["C"] in C_GRID_KFOLD


def test_evaluate_transfer_on_real_data(data_dir, bow):
    res = evaluate_transfer("SUBJ", data_dir, bow, kfold=5, limit=400)
    assert res["n"] == {"all": 400}
    assert res["score"] > 65  # subjective vs objective is lexical
    assert all(c in C_GRID for c in res["C"])
    trec = evaluate_transfer("TREC", data_dir, bow, kfold=3, limit=300)
    assert trec["n"] == {"train": 300, "test": 300} and 0 <= trec["score"] <= 100
    with pytest.raises(ValueError, match="not a transfer task"):
        evaluate_transfer("STS12", data_dir, bow)
