"""`tpembed search` records each step's dev gain and its paired bootstrap CI; with the CI rule
(`require_ci` / `--adopt-if-ci-above-zero`) a higher score whose CI includes 0 is not adopted."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import DATA_DIR
from typer.testing import CliRunner

from tpembed.cli import app
from tpembed.evaluation.data import STSData, STSSubset, get_spec
from tpembed.evaluation.sts import spearman100
from tpembed.tuning import Candidate, SearchSpace, coordinate_ascent


class FakeScorer:
    """A scorer whose candidates' similarities depend on pooling alone (known gains, known CIs).

    last_token: gold + noise; attention_sum: the same, with the one worst pair put right (a higher
    score, but the resamples that miss that pair gain nothing, so the CI's lower bound is 0);
    mean: gold + much less noise (a clear gain).
    """

    def __init__(self, n: int = 400) -> None:
        rng = np.random.default_rng(0)
        gold = np.round(rng.uniform(0, 5, n), 1)
        noise = rng.normal(0, 1.5, n)
        worst = int(np.argmax(np.abs(noise)))
        fixed = gold + noise
        fixed[worst] = gold[worst]
        self.sims = {"last_token": gold + noise, "attention_sum": fixed, "mean": gold + 0.2 * noise}
        sents = [f"s{i}" for i in range(n)]
        self.data = STSData(get_spec("STSBenchmark-dev"), {"dev": STSSubset("dev", sents, sents, gold)})
        self.gold = gold

    def similarities(self, candidate: Candidate) -> dict[str, np.ndarray]:
        return {"dev": self.sims[candidate["pooling"]]}

    def score(self, candidate: Candidate) -> float:
        return spearman100(self.sims[candidate["pooling"]], self.gold)


def _search(poolings, require_ci):
    space = SearchSpace(poolings=poolings, outputs=[3, 4])
    return coordinate_ascent(FakeScorer(), space, rounds=2, progress=False, require_ci=require_ci)


def test_the_ci_rule_refuses_a_gain_whose_ci_includes_zero():
    scorer = FakeScorer()
    assert scorer.score(Candidate(pooling="attention_sum")) > scorer.score(Candidate(pooling="last_token"))

    best, _, trace = _search(["last_token", "attention_sum"], require_ci=False)
    assert best["pooling"] == "attention_sum"  # default: any higher score is adopted, as before
    step = next(e for e in trace if e.candidate["pooling"] == "attention_sum")
    assert step.adopted and step.gain > 0 and step.ci_low <= 0 <= step.ci_high

    best, score, trace = _search(["last_token", "attention_sum"], require_ci=True)
    assert best["pooling"] == "last_token"
    assert score == pytest.approx(scorer.score(Candidate(pooling="last_token")))
    refused = [e for e in trace if e.candidate["pooling"] == "attention_sum"]
    assert refused and all(not e.adopted and e.gain > 0 and e.ci_low <= 0 for e in refused)


def test_the_ci_rule_adopts_a_clear_gain_and_every_step_records_its_ci():
    best, _, trace = _search(["last_token", "attention_sum", "mean"], require_ci=True)
    assert best["pooling"] == "mean"
    step = next(e for e in trace if e.candidate["pooling"] == "mean")
    assert step.adopted and step.ci_low > 0 and step.ci_low < step.gain < step.ci_high
    assert trace[0].gain is None and trace[0].adopted  # the starting point
    for e in trace[1:]:
        assert e.gain is not None and e.ci_low is not None and e.ci_high is not None
        if e.gain == 0:  # the current candidate again, or a layer that changes nothing here
            assert (e.ci_low, e.ci_high) == (0.0, 0.0)


def test_search_cli_with_the_ci_rule_writes_gains_and_cis(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TPEMBED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "search"
    res = CliRunner().invoke(app, [
        "search", "--model", str(tiny_folder), "--data", str(DATA_DIR), "--limit", "12", "--prompts", "prompteol,ke",
        "--tp", "vanilla", "--outputs", "3,4", "--rounds", "1", "--adopt-if-ci-above-zero", "--ci-resamples", "200",
        "--out", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    assert "only gains whose 95% CI is above 0" in res.output
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert {"gain", "ci_low", "ci_high", "adopted"} <= set(rows[0])
    for row in rows[1:]:
        if row["adopted"] == "1":
            assert float(row["ci_low"]) > 0
    doc = json.loads((out / "search.json").read_text())
    assert doc["require_ci"] is True and doc["ci"]["resamples"] == 200
    assert all({"gain", "ci_low", "ci_high", "adopted"} <= set(e) for e in doc["evaluations"])
