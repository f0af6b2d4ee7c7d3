"""Paired bootstrap CIs for STS Spearman: exact on each resample, seeded, stratified by subset, paired."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from tpembed.evaluation.bootstrap import (Interval, PairedBootstrap, bootstrap_sts, paired_bootstrap,
                                          resample_counts, task_pairs, weighted_midranks)
from tpembed.evaluation.sts import summarize


def _task(sizes=(300, 200, 150), noise=1.0, seed=0):
    """Gold scores per subset (0-5, ties as in STS files) and a system's noisy similarities."""
    rng = np.random.default_rng(seed)
    gold = {f"s{i}": np.round(rng.uniform(0, 5, n), 1) for i, n in enumerate(sizes)}
    sims = {k: g / 5 + rng.normal(0, noise / 5, len(g)) for k, g in gold.items()}
    return gold, sims


def test_every_resample_is_scored_exactly_as_spearmanr_scores_it():
    gold, sims = _task()
    boot = PairedBootstrap(gold, 20, seed=3)
    resampled = boot.resamples(sims)
    pooled_s = np.concatenate(list(sims.values()))
    pooled_g = np.concatenate(list(gold.values()))
    for b in range(20):
        idx = np.repeat(np.arange(len(pooled_g)), boot.counts[b])
        assert resampled[b] == pytest.approx(spearmanr(pooled_s[idx], pooled_g[idx])[0] * 100, abs=1e-9)
    # the point estimate is the task's score: the pooled ("all") Spearman of summarize / score_sts
    expected = summarize({k: (sims[k], gold[k]) for k in gold})["spearman"]["all"]
    assert boot.point(sims) == pytest.approx(expected, abs=1e-9)


def test_resamples_keep_every_subset_size():
    counts = resample_counts([5, 7, 3], n_resamples=50, seed=1)
    assert counts.shape == (50, 15)
    assert (counts[:, :5].sum(axis=1) == 5).all()
    assert (counts[:, 5:12].sum(axis=1) == 7).all()
    assert (counts[:, 12:].sum(axis=1) == 3).all()


def test_midranks_average_ties_like_scipy():
    from scipy.stats import rankdata

    values = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 5.0])
    counts = np.array([[1, 2, 0, 1, 1, 3]])
    expanded = np.repeat(values, counts[0])
    ranks = weighted_midranks(values, counts)[0]
    expected = rankdata(expanded)
    # each used element's rank is the rank its copies get in the expanded sample
    for i, v in enumerate(values):
        if counts[0, i]:
            assert ranks[i] == pytest.approx(expected[np.flatnonzero(expanded == v)[0]])


def test_ci_contains_the_point_estimate_and_is_seeded():
    gold, sims = _task()
    a = bootstrap_sts({k: (sims[k], gold[k]) for k in gold}, seed=0)
    assert a.low < a.estimate < a.high
    again = bootstrap_sts({k: (sims[k], gold[k]) for k in gold}, seed=0)
    assert again == a
    other = bootstrap_sts({k: (sims[k], gold[k]) for k in gold}, seed=1)
    assert other.estimate == a.estimate and (other.low, other.high) != (a.low, a.high)


def test_ci_narrows_with_more_pairs():
    small_gold, small_sims = _task(sizes=(100,), seed=0)
    big_gold, big_sims = _task(sizes=(3000,), seed=0)
    small = bootstrap_sts({k: (small_sims[k], small_gold[k]) for k in small_gold})
    big = bootstrap_sts({k: (big_sims[k], big_gold[k]) for k in big_gold})
    assert (big.high - big.low) < 0.4 * (small.high - small.low)


def test_difference_of_a_system_with_itself_is_zero():
    gold, sims = _task()
    out = paired_bootstrap({"a": sims, "same": {k: v.copy() for k, v in sims.items()}}, gold)
    for name in ("a", "same"):
        assert out["diffs"][name] == Interval(0.0, 0.0, 0.0)


def test_differences_are_paired_on_the_same_resamples():
    gold, sims = _task(noise=1.5)
    # a monotone transform keeps every rank: the same score on every resample, whatever the pairs drawn
    shifted = {k: 2 * v + 0.3 for k, v in sims.items()}
    out = paired_bootstrap({"a": sims, "shifted": shifted}, gold)
    diff = out["diffs"]["shifted"]
    assert (diff.low, diff.high) == pytest.approx((0.0, 0.0), abs=1e-9)
    single = out["scores"]["a"]
    assert single.high - single.low > 5  # each system alone is uncertain; only unpaired resamples would show it

    # a slightly different system: the paired interval is much narrower than one from independent resamples
    rng = np.random.default_rng(7)
    close = {k: v + rng.normal(0, 0.02, len(v)) for k, v in sims.items()}
    paired = paired_bootstrap({"a": sims, "close": close}, gold)["diffs"]["close"]
    a_samples = PairedBootstrap(gold, seed=0).resamples(sims)
    b_samples = PairedBootstrap(gold, seed=1).resamples(close)
    unpaired = np.percentile(b_samples - a_samples, [2.5, 97.5])
    assert paired.high - paired.low < 0.3 * (unpaired[1] - unpaired[0])


def test_task_pairs_reads_what_score_sts_stores(tmp_path):
    import json

    from tpembed.evaluation import write_json
    from tpembed.evaluation.data import STSData, STSSubset, get_spec
    from tpembed.evaluation.sts import score_sts

    gold, sims = _task(sizes=(6, 4))
    subsets = {k: STSSubset(k, [f"{k}a{i}" for i in range(len(g))], [f"{k}b{i}" for i in range(len(g))], g)
               for k, g in gold.items()}
    vec = {}
    for k, s in subsets.items():
        for i, (x, y) in enumerate(zip(s.sent1, s.sent2)):
            angle = np.arccos(np.clip(sims[k][i], -1, 1))
            vec[x], vec[y] = np.array([1.0, 0.0]), np.array([np.cos(angle), np.sin(angle)])
    res = score_sts(STSData(get_spec("STS12"), subsets), lambda sents: np.stack([vec[s] for s in sents]))
    path = write_json(tmp_path / "r.json", {"STS12": res["score"]}, {"STS12": res}, {})
    doc = json.loads(path.read_text())
    read_sims, read_gold = task_pairs(doc["details"]["STS12"])
    assert list(read_gold) == list(gold) and all(np.allclose(read_gold[k], gold[k]) for k in gold)
    assert PairedBootstrap(read_gold).point(read_sims) == pytest.approx(res["score"], abs=1e-9)
    assert task_pairs({"score": 1.0}) is None  # an older result file: no per-pair values
