"""Runner: one encoder call per run, task sets, averages, modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tpembed.evaluation import evaluate, load_task, tasks_for

STS7 = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]
TRANSFER7 = ["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"]


def test_tasks_for():
    assert tasks_for("sts") == STS7
    assert tasks_for("sts", "dev") == ["STSBenchmark-dev"]
    assert tasks_for("transfer") == TRANSFER7
    assert tasks_for("full") == STS7 + TRANSFER7
    assert tasks_for("full", "fasttest") == STS7 + TRANSFER7
    assert tasks_for("stsb") == ["STSBenchmark"]
    with pytest.raises(ValueError, match="task set"):
        tasks_for("glue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        tasks_for("sts", "final")  # type: ignore[arg-type]


def test_encode_fn_called_once_with_unique_sentences(data_dir, counting_encoder):
    tasks = ["STS12", "STS14", "STSBenchmark", "SICKRelatedness", "MR", "MRPC"]
    res = evaluate(tasks, data_dir, counting_encoder, mode="fasttest", limit=40,
                   progress=False)
    assert len(counting_encoder.calls) == 1
    sent = counting_encoder.calls[0]
    assert len(sent) == len(set(sent))
    expected = set()
    for t in tasks:
        expected.update(load_task(t, data_dir, limit=40).sentences())
    assert set(sent) == expected
    assert res["meta"]["n_unique_sentences"] == len(sent)


def test_sts_repeats_are_encoded_once(data_dir, counting_encoder):
    # STS16 repeats sentences across pairs; the call must hold each only once
    total = len(load_task("STS16", data_dir).sentences())
    evaluate(["STS16"], data_dir, counting_encoder, progress=False)
    assert len(counting_encoder.calls[0]) < total


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")  # TREC, limit=60
def test_full_run_with_limit(data_dir, bow):
    res = evaluate(tasks_for("full"), data_dir, bow, mode="fasttest", limit=60, progress=False)
    scores = res["scores"]
    assert set(scores) == set(STS7 + TRANSFER7) | {"STSAvg", "TransferAvg"}
    for t in STS7:
        assert -100 <= scores[t] <= 100
    for t in TRANSFER7:
        assert 0 <= scores[t] <= 100
    assert scores["STSAvg"] == pytest.approx(np.mean([scores[t] for t in STS7]))
    assert scores["TransferAvg"] == pytest.approx(np.mean([scores[t] for t in TRANSFER7]))
    assert res["details"]["STS12"]["n_pairs"] == 60  # N pairs per task, shared by its 5 subsets
    assert res["details"]["MR"]["kfold"] == 5
    assert res["meta"]["kfold"] == 5 and res["meta"]["limit"] == 60


def test_dev_mode_reports_validation_accuracy(data_dir, bow):
    res = evaluate(tasks_for("sts", "dev") + ["CR"], data_dir, bow, mode="dev", limit=80,
                   progress=False)
    assert set(res["scores"]) == {"STSBenchmark-dev", "CR", "STSAvg", "TransferAvg"}
    cr = res["details"]["CR"]
    assert res["scores"]["CR"] == cr["devacc"]
    assert res["scores"]["STSAvg"] == res["scores"]["STSBenchmark-dev"]


def test_only_sts_has_no_transfer_avg(data_dir, bow):
    res = evaluate(["STS13"], data_dir, bow, limit=20, progress=False)
    assert "TransferAvg" not in res["scores"] and not math.isnan(res["scores"]["STSAvg"])


def test_runner_errors(tmp_path, bow):
    with pytest.raises(ValueError, match="mode"):
        evaluate(["STS12"], tmp_path, bow, mode="final")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(["STS99"], tmp_path, bow)
    with pytest.raises(FileNotFoundError, match="missing"):
        evaluate(["STS12"], tmp_path / "missing", bow)
