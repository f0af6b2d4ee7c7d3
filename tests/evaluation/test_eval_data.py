"""Readers: documented counts on the real data, formats and errors on synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tpembed.evaluation import TASKS, check_data_dir, load_task
from tpembed.evaluation.data import STSData, TaskSpec, TransferData, normalize

# Copied from /work/shared/senteval/README.md (the documented sizes), not from TASKS.
README_COUNTS = {
    "STS12": {"pairs": 3108}, "STS13": {"pairs": 1500}, "STS14": {"pairs": 3750},
    "STS15": {"pairs": 3000}, "STS16": {"pairs": 1186},
    "STSBenchmark": {"test": 1379}, "STSBenchmark-dev": {"dev": 1500},
    "SICKRelatedness": {"test": 4927},
    "MR": {"all": 10662}, "CR": {"all": 3775}, "SUBJ": {"all": 10000}, "MPQA": {"all": 10606},
    "SST2": {"train": 67349, "dev": 872, "test": 1821},
    "TREC": {"train": 5452, "test": 500}, "MRPC": {"train": 4076, "test": 1725},
}


def test_registry_covers_the_paper_tasks():
    assert set(TASKS) == set(README_COUNTS)
    assert {t.kind for t in TASKS.values()} == {"sts", "transfer"}
    for name, spec in TASKS.items():
        assert spec.expected_counts == README_COUNTS[name]
    with pytest.raises(Exception):
        TASKS["MR"].name = "x"  # frozen


@pytest.mark.parametrize("task", sorted(README_COUNTS))
def test_reader_counts_match_readme(data_dir, task):
    data = load_task(task, data_dir)
    assert data.counts() == README_COUNTS[task]
    for s in data.sentences():
        assert s == normalize(s)  # batcher view: single spaces, no tabs/newlines
        assert "\ufeff" not in s


def test_check_data_dir_all(data_dir):
    counts = check_data_dir(data_dir)
    assert counts == README_COUNTS


def test_sts_year_subsets_and_gold(data_dir):
    data = load_task("STS12", data_dir)
    assert isinstance(data, STSData)
    assert list(data.subsets) == ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN",
                                  "surprise.SMTnews"]
    msrpar = data.subsets["MSRpar"]
    assert len(msrpar.sent1) == len(msrpar.sent2) == len(msrpar.gold) == 750
    assert msrpar.gold[:3].tolist() == [4.4, 0.8, 3.6]  # first lines of STS.gs.MSRpar.txt
    assert msrpar.sent1[0].startswith("the problem likely will mean corrective changes")
    assert msrpar.sent2[0].startswith("he said the problem needs to be corrected")
    sts16 = load_task("STS16", data_dir)
    assert all(np.all((s.gold >= 0) & (s.gold <= 5)) for s in sts16.subsets.values())


def test_transfer_readers_labels(data_dir):
    trec = load_task("TREC", data_dir)
    assert isinstance(trec, TransferData)
    assert sorted(set(trec.splits["train"].labels.tolist())) == [0, 1, 2, 3, 4, 5]
    assert trec.splits["train"].text[0] == "How did serfdom develop in and then leave Russia ?"
    mrpc = load_task("MRPC", data_dir)
    tr = mrpc.splits["train"]
    assert tr.text_b is not None and len(tr.text_b) == len(tr.text) == 4076
    assert tr.labels[:2].tolist() == [1, 0] and tr.text[0].startswith("Amrozi accused")
    mr = load_task("MR", data_dir).splits["all"]
    assert mr.labels.sum() == 5331  # pos file = label 1
    sick = load_task("SICKRelatedness", data_dir).subsets["test"]
    assert sick.sent1[0] == "There is no boy playing outdoors and there is no man smiling"
    assert sick.gold[0] == pytest.approx(3.3)
    sst = load_task("SST2", data_dir).splits["train"]
    assert sst.text[0] == "hide new secretions from the parental units" and sst.labels[0] == 0


def test_limit_semantics(data_dir):
    # N pairs per STS task: a year's subsets share them, at least 2 each (README's --limit)
    sts = load_task("STS12", data_dir, limit=12)
    assert sts.n_pairs == 12 and [len(s) for s in sts.subsets.values()] == [3, 3, 2, 2, 2]
    assert all(len(s) == 2 for s in load_task("STS12", data_dir, limit=3).subsets.values())
    assert load_task("STSBenchmark", data_dir, limit=5).n_pairs == 5
    mr = load_task("MR", data_dir, limit=11).splits["all"]
    assert len(mr) == 11 and mr.labels.sum() == 6  # ceil(N/2) positives, floor(N/2) negatives
    sst = load_task("SST2", data_dir, limit=9)
    assert sst.counts() == {"train": 9, "dev": 9, "test": 9}
    with pytest.raises(ValueError):
        load_task("MR", data_dir, limit=0)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_blank_gold_lines_are_skipped(tmp_path):
    spec = TaskSpec("toy", "sts", "sts_year", "STS/toy", ("STS.input.a.txt", "STS.gs.a.txt"),
                    (("pairs", 2),), "all", "toy", subsets=("a",))
    _write(tmp_path / "STS/toy/STS.input.a.txt", "a  b\tc d\ne f\tg h\ni\tj\n")
    _write(tmp_path / "STS/toy/STS.gs.a.txt", "1.5\n\n4\n")
    data = load_task(spec, tmp_path)
    sub = data.subsets["a"]
    assert sub.sent1 == ["a b", "i"] and sub.sent2 == ["c d", "j"]
    assert sub.gold.tolist() == [1.5, 4.0]
    assert data.counts() == {"pairs": 2}


def test_misaligned_sts_files_raise(tmp_path):
    spec = TaskSpec("toy", "sts", "sts_year", "STS/toy", (), (("pairs", 1),), "all", "toy",
                    subsets=("a",))
    _write(tmp_path / "STS/toy/STS.input.a.txt", "a\tb\nc\td\n")
    _write(tmp_path / "STS/toy/STS.gs.a.txt", "1\n")
    with pytest.raises(ValueError, match="line-aligned"):
        load_task(spec, tmp_path)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_task("STS12", missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        check_data_dir(missing)


def test_missing_task_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="STS12-en-test"):
        load_task("STS12", tmp_path)
    _write(tmp_path / "MR/rt-polarity.pos", "good .\n")
    with pytest.raises(FileNotFoundError, match="rt-polarity.neg"):
        load_task("MR", tmp_path)
    with pytest.raises(FileNotFoundError, match="rt-polarity.neg"):
        check_data_dir(tmp_path, ["MR"])


def test_count_mismatch_is_reported(tmp_path):
    _write(tmp_path / "MR/rt-polarity.pos", "good .\nfine .\n")
    _write(tmp_path / "MR/rt-polarity.neg", "bad .\n")
    with pytest.raises(ValueError, match="MR: expected"):
        check_data_dir(tmp_path, ["MR"])
    assert check_data_dir(tmp_path, ["MR"], check_counts=False) == {}


def test_unknown_task(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        load_task("STS17", tmp_path)


def test_data_dir_from_env(monkeypatch, data_dir):
    monkeypatch.setenv("TPEMBED_DATA", str(data_dir))
    assert load_task("STS13", None, limit=9).n_pairs == 9
    monkeypatch.delenv("TPEMBED_DATA")
    with pytest.raises(ValueError, match="TPEMBED_DATA"):
        load_task("STS13", None)
