"""The packaged real model (SmolLM2-135M-Instruct GGUF from PyPI): loading, tokenization, quality."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from tpembed import Encoder, load_model
from tpembed.cli import app
from tpembed.models import default_cache_dir
from tpembed.prompts import PROMPTS, normalize_sentence, render

pytestmark = pytest.mark.packaged

PARAPHRASE = ("A man is playing a guitar.", "A man plays the guitar.")
UNRELATED = ("A man is playing a guitar.", "The stock market fell sharply on Tuesday.")


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m", device="cpu")


def test_gguf_is_converted_once_and_cached(smollm2):
    sha = smollm2.identity["sha256"]
    assert (default_cache_dir() / "converted" / sha[:20] / "tpembed-converted.json").exists()
    assert smollm2.identity["model_type"] == "llama" and smollm2.num_layers == 30


@pytest.mark.parametrize("plan", ["vanilla", "tp"])
def test_paraphrase_is_closer_than_an_unrelated_pair(smollm2, plan):
    enc = Encoder(smollm2, use_which_plan=plan, tp_starting_index=1, tp_exiting_index=7)
    a = enc.encode(list(PARAPHRASE))
    b = enc.encode(list(UNRELATED))
    assert enc.similarity(a[0], a[1])[0, 0] > enc.similarity(b[0], b[1])[0, 0]


def test_prompts_are_tokenized_exactly_as_the_whole_string(smollm2):
    tok = smollm2.tokenizer
    enc = Encoder(smollm2, use_which_plan="tp", tp_exiting_index=7)
    template = PROMPTS["prompteol"].templates[0]
    sentence = normalize_sentence(PARAPHRASE[0])
    ours = enc._tokenize(template, [sentence])[0]
    assert list(ours.ids) == tok(render(template, sentence, use_placeholder=True).text)["input_ids"]
    vanilla = tok(render(template, sentence, use_placeholder=False).text)["input_ids"]
    # the paper's TP prompt adds exactly <PST> and a lone space token
    assert len(ours.ids) == len(vanilla) + 2
    assert tok.convert_ids_to_tokens(ours.ids[ours.pst_index]) == "<PST>"


def test_cli_encode_prints_similarities_and_saves(tmp_path):
    out = tmp_path / "emb.npy"
    result = CliRunner().invoke(
        app, ["encode", *PARAPHRASE, UNRELATED[1], "--model", "smollm2-135m", "--use-which-plan", "tp",
              "--tp-exiting-index", "7", "--output", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "3 x 576" in result.output and "cosine similarity" in result.output
    vectors = np.load(out)
    assert vectors.shape == (3, 576)


def test_cli_reports_bad_settings_clearly():
    result = CliRunner().invoke(app, ["encode", "x", "--output-layer", "99"])
    assert result.exit_code == 2
    assert "output_layer=99 is out of range" in result.output
    result = CliRunner().invoke(app, ["encode", "x", "--use-which-plan", "sometimes"])
    assert result.exit_code == 2 and "tp" in result.output
