"""Run a set of SentEval tasks with a single call to the encoder."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ._embeddings import EncodeFn, encode_unique, unique
from .data import (KFOLD_BY_MODE, Mode, STSData, TaskData, check_mode, get_spec, load_task,
                   resolve_data_dir)
from .sts import score_sts
from .transfer import DEFAULT_MAX_ITER, score_transfer


def task_sentences(tasks: Sequence[str], data_dir: str | os.PathLike[str] | None,
                   limit: int | None = None) -> list[str]:
    """The distinct sentences of ``tasks`` in the order :func:`evaluate` passes them to ``encode_fn``."""
    root = resolve_data_dir(data_dir)
    return unique(s for name in unique(tasks) for s in load_task(get_spec(name), root, limit).sentences())


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate(tasks: Sequence[str], data_dir: str | os.PathLike[str] | None,
             encode_fn: EncodeFn, mode: Mode = "test", limit: int | None = None,
             seed: int = 0, progress: bool = True, *, max_iter: int = DEFAULT_MAX_ITER,
             n_jobs: int | None = None) -> dict:
    """Evaluate ``encode_fn`` on ``tasks`` and return scores x100.

    All distinct sentences of all tasks are collected first and ``encode_fn`` is
    called exactly once on them. ``mode`` sets the CV folds (10 for "test", 5 for
    "dev"/"fasttest"); in "dev" mode a transfer task's headline score is its
    validation accuracy (``devacc``), as in SimCSE's dev mode. ``limit=N`` keeps the
    first N pairs per STS subset / N examples per split (see ``load_task``) for smoke runs.

    Returns ``{"scores": {task: float, "STSAvg", "TransferAvg"}, "details": {task: {...}},
    "meta": {...}}``; averages only cover tasks that ran.
    """
    check_mode(mode)
    names = unique(tasks)
    if not names:
        raise ValueError("no tasks given")
    specs = [get_spec(t) for t in names]
    root = resolve_data_dir(data_dir)
    kfold = KFOLD_BY_MODE[mode]

    loaded: dict[str, TaskData] = {s.name: load_task(s, root, limit) for s in specs}  # ~1 s: no bar
    sentences = unique(s for d in loaded.values() for s in d.sentences())
    t0 = time.perf_counter()
    table = encode_unique(sentences, encode_fn)
    encode_s = time.perf_counter() - t0

    scores: dict[str, float] = {}
    details: dict[str, dict] = {}
    t1 = time.perf_counter()
    bar = tqdm(loaded.items(), desc="scoring", disable=not progress)
    for name, data in bar:
        bar.set_postfix_str(name)
        task_start = time.perf_counter()
        if isinstance(data, STSData):
            res = score_sts(data, table)
        else:
            res = score_transfer(data, table, kfold=kfold, seed=seed, max_iter=max_iter,
                                 progress=progress, n_jobs=n_jobs)
            if mode == "dev":
                res["score"] = float(res["devacc"])
        res["seconds"] = time.perf_counter() - task_start
        details[name] = res
        scores[name] = float(res["score"])

    sts_ran = [scores[s.name] for s in specs if s.kind == "sts"]
    tr_ran = [scores[s.name] for s in specs if s.kind == "transfer"]
    if sts_ran:
        scores["STSAvg"] = _mean(sts_ran)
    if tr_ran:
        scores["TransferAvg"] = _mean(tr_ran)
    meta = {"mode": mode, "kfold": kfold, "seed": seed, "limit": limit, "tasks": names,
            "data_dir": str(root), "n_unique_sentences": len(sentences), "dim": table.dim,
            "n_nonfinite_embeddings": table.n_nonfinite, "encode_seconds": encode_s,
            "score_seconds": time.perf_counter() - t1, "max_iter": max_iter}
    return {"scores": scores, "details": details, "meta": meta}
