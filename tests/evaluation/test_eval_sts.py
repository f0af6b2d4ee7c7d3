"""STS scoring: cosine, Spearman x100, SentEval's all / mean / wmean pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tpembed.evaluation import evaluate_sts, summarize
from tpembed.evaluation.data import TaskSpec
from tpembed.evaluation.sts import cosine_rows, spearman100

# Two subsets, each perfectly rank-correlated on its own, but subset B has the higher
# gold scores and the lower system scores. Pooled ranks: sys = [4,5,6,1,2,3],
# gold = [1,2,3,4,5,6]; sum d^2 = 6 * 9 = 54, rho = 1 - 6*54/(6*35) = -19/35.
SYS_A, GOLD_A = [0.5, 0.6, 0.7], [1.0, 2.0, 3.0]
SYS_B, GOLD_B = [0.1, 0.2, 0.3], [4.0, 5.0, 6.0]
POOLED = -19 / 35 * 100


def test_spearman100_basic():
    assert spearman100([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(100)
    assert spearman100([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-100)
    # one swapped pair among 4: rho = 1 - 6*2/(4*15) = 0.8
    assert spearman100([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(80)


def test_pooled_all_differs_from_mean():
    res = summarize({"A": (np.array(SYS_A), np.array(GOLD_A)),
                     "B": (np.array(SYS_B), np.array(GOLD_B))})
    assert res["subsets"]["A"]["spearman"] == pytest.approx(100)
    assert res["subsets"]["B"]["spearman"] == pytest.approx(100)
    assert res["spearman"]["mean"] == pytest.approx(100)
    assert res["spearman"]["wmean"] == pytest.approx(100)
    assert res["spearman"]["all"] == pytest.approx(POOLED)
    assert res["n_pairs"] == 6


def test_wmean_weights_by_size():
    # A: 3 pairs, rho = 100; C: 4 pairs, rho = 80 -> mean 90, wmean (300+320)/7
    res = summarize({"A": (np.array(SYS_A), np.array(GOLD_A)),
                     "C": (np.array([1, 2, 3, 4.0]), np.array([1, 2, 4, 3.0]))})
    assert res["spearman"]["mean"] == pytest.approx(90)
    assert res["spearman"]["wmean"] == pytest.approx(620 / 7)


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0]])
    assert cosine_rows(a, b).tolist() == pytest.approx([0.0, 1.0, 0.0])  # zero vector -> 0


def _toy_sts(tmp_path: Path) -> TaskSpec:
    """Writes a 2-subset STS task whose cosines are SYS_A / SYS_B by construction."""
    folder = tmp_path / "STS" / "toy"
    folder.mkdir(parents=True)
    for sub, gold in (("A", GOLD_A), ("B", GOLD_B)):
        lines = [f"anchor  sentence\t{sub} {i}" for i in range(3)]
        (folder / f"STS.input.{sub}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # a blank gold line with an unscorable pair must be skipped
        (folder / f"STS.gs.{sub}.txt").write_text(
            "\n".join(str(g) for g in gold) + "\n\n", encoding="utf-8")
        with open(folder / f"STS.input.{sub}.txt", "a", encoding="utf-8") as fh:
            fh.write("anchor sentence\tunscored\n")
    return TaskSpec("toy", "sts", "sts_year", "STS/toy", (), (("pairs", 6),), "all", "toy",
                    subsets=("A", "B"))


def _angle_encoder(calls: list[list[str]]):
    cos = {f"A {i}": c for i, c in enumerate(SYS_A)} | {f"B {i}": c for i, c in enumerate(SYS_B)}

    def encode(sentences: list[str]) -> np.ndarray:
        calls.append(list(sentences))
        out = []
        for s in sentences:
            if s == "anchor sentence":
                out.append([2.0, 0.0])  # norm != 1 on purpose: cosine must normalise
            else:
                c = cos[s]
                out.append([3 * c, 3 * np.sqrt(1 - c * c)])
        return np.array(out)
    return encode


def test_evaluate_sts_pools_all_subsets(tmp_path):
    spec = _toy_sts(tmp_path)
    calls: list[list[str]] = []
    res = evaluate_sts(spec, tmp_path, _angle_encoder(calls))
    assert res["score"] == pytest.approx(POOLED)
    assert res["spearman"]["mean"] == pytest.approx(100)
    assert res["n_pairs"] == 6
    assert set(res["subsets"]) == {"A", "B"}
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == 7  # anchor once
    assert "unscored" not in calls[0]


def test_evaluate_sts_rejects_transfer_task(tmp_path):
    with pytest.raises(ValueError, match="not an STS task"):
        evaluate_sts("MR", tmp_path, lambda s: np.zeros((len(s), 2)))


def test_bad_encoder_output_shape(data_dir):
    with pytest.raises(ValueError, match="shape"):
        evaluate_sts("STSBenchmark", data_dir, lambda s: np.zeros((len(s) - 1, 4)), limit=5)


def test_real_stsb_bow_beats_random(data_dir, bow):
    lexical = evaluate_sts("STSBenchmark", data_dir, bow, limit=300)
    rng = np.random.default_rng(0)
    noise = evaluate_sts("STSBenchmark", data_dir,
                         lambda s: rng.standard_normal((len(s), 64)), limit=300)
    assert lexical["n_pairs"] == 300
    assert lexical["score"] > 25  # word overlap correlates with the gold scores
    assert abs(noise["score"]) < 20  # random vectors do not (a misaligned reader would not either)
    sick = evaluate_sts("SICKRelatedness", data_dir, bow, limit=300)
    assert sick["score"] > 35
