"""tpembed inside MTEB v2: ModelMeta, templates by task / prompt type, the CLI on mock tasks, STS-B parity."""

from __future__ import annotations

import json
from typing import Any

import mteb
import numpy as np
import pytest
from conftest import DATA_DIR
from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.mocks import MockClassificationTask, MockClusteringTask, MockRetrievalTask, MockSTSTask
from mteb.models.model_meta import ScoringFunction
from mteb.types import PromptType
from typer.testing import CliRunner

from tpembed import Encoder, EncoderConfig, mteb_model
from tpembed.cli import app
from tpembed.evaluation.data import load_task
from tpembed.identity import encoder_identity

from .conftest import TINY_SETTINGS

QUERY = 'This query : {placeholder}"{sentence}" means in one word:"'
DOCUMENT = 'This passage : {placeholder}"{sentence}" means in one word:"'
STS = 'In one word, {placeholder}"{sentence}" means:"'
CLASSIFY = 'The topic of {placeholder}"{sentence}" in one word:"'
TEXTS = ["A man is playing a guitar.", "hi", "What is the capital of France?"]

MOCK_TASKS = ["MockSTSTask", "MockClassificationTask", "MockRetrievalTask", "MockRerankingTask", "MockClusteringTask"]


@pytest.fixture(scope="module")
def tiny_mteb(tiny_model_dir):
    templates = {"query": QUERY, "document": DOCUMENT, "STS": STS, "MockClassificationTask": CLASSIFY}
    with pytest.warns(UserWarning, match="MockClassificationTask"):  # mock tasks are not in MTEB's registry
        return mteb_model(model=tiny_model_dir, templates=templates, **TINY_SETTINGS)


def test_model_meta_is_complete_and_keys_results_by_every_setting(tiny_mteb, tiny_model_dir):
    meta = tiny_mteb.mteb_model_meta
    assert meta.name.startswith("tpembed/") and meta.revision.startswith("local-")
    assert meta.embed_dim == tiny_mteb.model.embedding_dim
    assert meta.n_parameters == sum(p.numel() for p in tiny_mteb.model.loaded.model.parameters())
    assert meta.similarity_fn_name is ScoringFunction.COSINE and meta.modalities == ["text"]
    # results are keyed by the Encoder's identity (tpembed.identity), not by a list of settings of its own
    assert meta.experiment_kwargs["identity"] == encoder_identity(tiny_mteb.model)
    assert meta.experiment_kwargs["templates"]["query"] == QUERY
    assert meta.loader_kwargs["tp_exiting_index"] == 3 and meta.loader_kwargs["batch_size"] == 16
    assert meta.to_dict()["loader"] == "load_tpembed_model"
    # results of different configs never share a folder; batching does not change a vector
    other_exit = mteb_model(model=tiny_model_dir, **{**TINY_SETTINGS, "tp_exiting_index": 2}).mteb_model_meta
    bigger_batch = mteb_model(model=tiny_model_dir, batch_size=3, **TINY_SETTINGS).mteb_model_meta
    plain = mteb_model(model=tiny_model_dir, **TINY_SETTINGS).mteb_model_meta
    assert len({meta.experiment_name, other_exit.experiment_name, plain.experiment_name}) == 3
    assert bigger_batch.experiment_name == plain.experiment_name
    # the meta's loader rebuilds the same model
    reloaded = meta.load_model()
    assert reloaded.templates == tiny_mteb.templates
    assert (reloaded.mteb_model_meta.name, reloaded.mteb_model_meta.revision) == (meta.name, meta.revision)
    assert reloaded.mteb_model_meta.experiment_name == meta.experiment_name
    np.testing.assert_array_equal(reloaded.model.encode(TEXTS), tiny_mteb.model.encode(TEXTS))
    # a meta whose identity is not the rebuilt model's says so
    stale = meta.model_copy(update={"experiment_kwargs": {**meta.experiment_kwargs,
                                                          "identity": {**meta.experiment_kwargs["identity"], "model": "x"}}})
    with pytest.warns(UserWarning, match="identity differs .* model"):
        stale.load_model()


@pytest.mark.parametrize(
    ("task", "prompt_type", "template"),
    [
        (MockRetrievalTask, PromptType.query, QUERY),
        (MockRetrievalTask, PromptType.document, DOCUMENT),
        (MockSTSTask, None, STS),  # by task type
        (MockClassificationTask, None, CLASSIFY),  # by task name
        (MockClusteringTask, None, None),  # no key matches: the config's prompt
    ],
)
def test_templates_follow_mtebs_precedence_and_reach_the_encoder(
    tiny_mteb, tiny_model_dir, task, prompt_type, template
):
    metadata = task().metadata
    assert tiny_mteb.template_for(metadata, prompt_type) == template
    batches = [{"text": TEXTS[:2]}, {"text": TEXTS[2:]}]
    got = tiny_mteb.encode(
        batches, task_metadata=metadata, hf_split="test", hf_subset="default", prompt_type=prompt_type
    )
    want = Encoder(model=tiny_model_dir, template=template, **TINY_SETTINGS).encode(TEXTS)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_bad_templates_fail_at_construction_and_unknown_keys_warn(tiny_model_dir):
    with pytest.warns(UserWarning, match="NoSuchTask is not valid"):  # kept: it may name a task of your own
        mteb_model(model=tiny_model_dir, templates={"NoSuchTask": QUERY}, **TINY_SETTINGS)
    with pytest.raises(ValueError, match=r"\{placeholder\}"):  # TP needs the <PST> slot
        mteb_model(model=tiny_model_dir, templates={"query": 'Query "{sentence}"'}, **TINY_SETTINGS)


class _RetrievalWithAnEmptyDocument(MockRetrievalTask):
    """MTEB's mock retrieval task with an empty document in its corpus, as real retrieval corpora have."""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        super().load_data(num_proc=num_proc, **kwargs)
        for splits in self.dataset.values():
            for split in splits.values():
                split["corpus"] = split["corpus"].add_item({"id": "d3", "text": "", "title": ""})


def test_an_empty_document_is_embedded_like_any_text(tiny_mteb, tiny_model_dir):
    """docs/guides/input-rules.md: "" gets the library's vector, and a retrieval run with an empty document ends."""
    metadata = MockRetrievalTask().metadata
    got = tiny_mteb.encode([{"text": ["", TEXTS[0]]}], task_metadata=metadata, hf_split="test",
                           hf_subset="default", prompt_type=PromptType.document)
    library = Encoder(model=tiny_model_dir, template=DOCUMENT, **TINY_SETTINGS)
    np.testing.assert_allclose(got[0], library.encode(""), rtol=1e-4, atol=1e-4 * float(np.abs(got).max()))
    from tpembed.integrations.mteb import run_tasks

    seen: list[str] = []
    original = tiny_mteb.encode

    def recording(inputs, **kwargs):
        batches = list(inputs)
        seen.extend(t for b in batches for t in b["text"])
        return original(batches, **kwargs)

    tiny_mteb.encode = recording  # type: ignore[method-assign]
    try:
        scores = run_tasks(tiny_mteb, [_RetrievalWithAnEmptyDocument()], show_progress_bar=False)
    finally:
        del tiny_mteb.encode
    assert "" in [t.strip() for t in seen] and np.isfinite(next(iter(scores.values()))["score"])


def test_cli_runs_mock_tasks_and_prints_the_main_scores(tiny_model_dir, tmp_path):
    out = tmp_path / "results"
    args = ["mteb", "--tasks", ",".join(f"mteb.mocks:{t}" for t in MOCK_TASKS), "--model", tiny_model_dir,
            "--device", "cpu", "--tp-exiting-index", "3", "--query-template", QUERY, "--output", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Avg." in result.output and "main scores (x100)" in result.output
    saved = {p.stem: json.loads(p.read_text()) for p in out.rglob("Mock*.json")}
    assert sorted(saved) == sorted(MOCK_TASKS)
    table = result.output[result.output.index("+--"):]
    for name, task_result in saved.items():
        score = 100 * task_result["scores"]["test"][0]["main_score"]
        assert name in table and f"{score:.2f}" in table
    meta = json.loads(next(out.rglob("model_meta.json")).read_text())
    assert meta["experiment_kwargs"]["templates"] == {"query": QUERY}


def test_cli_errors_are_one_line_and_come_before_loading_the_model():
    runner = CliRunner()
    result = runner.invoke(app, ["mteb", "--tasks", "STSBenchmarkk", "--model", "/no/such/model"])
    assert result.exit_code == 2
    assert result.output.startswith("error: 'STSBenchmarkk' not found. Did you mean: 'STSBenchmark'")
    result = runner.invoke(app, ["mteb", "--tasks", "no_such_module:Task"])
    assert result.exit_code == 2 and "cannot import task" in result.output
    result = runner.invoke(app, ["mteb", "--tasks", "mteb.mocks:TASK_TEST_GRID_AS_STRING"])
    assert result.exit_code == 2 and "not an MTEB task" in result.output
    result = runner.invoke(app, ["mteb", "--tasks", " , "])
    assert result.exit_code == 2 and "names no task" in result.output
    result = runner.invoke(app, ["mteb", "--tasks", "STSBenchmark", "--model", "/no/such/model",
                                 "--query-template", 'Query : "{sentence}"'])  # TP needs {placeholder}
    assert result.exit_code == 2 and "{placeholder}" in result.output


class SentEvalSTSBenchmark(AbsTaskSTS):
    """STS-B test read from the local SentEval files (tpembed's reader), first ``limit`` pairs."""

    limit = 60
    metadata = TaskMetadata(
        name="SentEvalSTSBenchmark",
        description="STS Benchmark test split from the SentEval distribution, read offline.",
        reference="https://github.com/facebookresearch/SentEval",
        dataset={"path": "local/senteval-stsb", "revision": "local"},
        type="STS",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="cosine_spearman",
        date=("2017-01-01", "2017-12-31"),
        domains=[],
        task_subtypes=[],
        license="not specified",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        split = load_task("STSBenchmark", DATA_DIR, limit=self.limit).subsets["test"]
        rows = {"sentence1": split.sent1, "sentence2": split.sent2, "score": [float(g) for g in split.gold]}
        self.dataset = DatasetDict({"test": Dataset.from_dict(rows)})
        self.data_loaded = True


@pytest.mark.packaged
def test_stsb_through_mteb_equals_tpembed_eval(tmp_path):
    if not (DATA_DIR / "STS" / "STSBenchmark" / "sts-test.csv").is_file():
        pytest.skip(f"SentEval data not found at {DATA_DIR}")
    model = mteb_model("smollm2-135m-tp", device="cpu")
    result = mteb.evaluate(model, [SentEvalSTSBenchmark()], cache=None, show_progress_bar=False)
    through_mteb = 100 * result.task_results[0].get_score()

    config = model.model.config
    assert config == EncoderConfig(model="smollm2-135m", use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2,
                                   output_layer=28, batch_size=32, device="cpu")
    out = tmp_path / "eval.json"
    args = ["eval", "--task-set", "stsb", "--limit", str(SentEvalSTSBenchmark.limit), "--no-cache", "-o", str(out),
            "--data", str(DATA_DIR), "--model", "smollm2-135m", "--use-which-plan", "tp", "--tp-starting-index", "1",
            "--tp-exiting-index", "2", "--output-layer", "28", "--device", "cpu"]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    through_tpembed = json.loads(out.read_text())["scores"]["STSBenchmark"]
    assert through_mteb == pytest.approx(through_tpembed, abs=0.01)
    assert through_tpembed > 50  # a real score, not two equal failures
