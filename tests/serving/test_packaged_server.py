"""The packaged SmolLM2 served as two named configs (vanilla and TP) from one copy of its weights."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tpembed import Encoder, load_model
from tpembed.config import resolve_config
from tpembed.identity import encoder_identity, identity_digest
from tpembed.prompts import PROMPTS, normalize_sentence, render

from conftest import assert_vectors_close

from .conftest import running

pytestmark = pytest.mark.packaged

NAMES = ["smollm2-135m", "smollm2-135m-tp"]
SENTENCES = ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply on Tuesday.",
             "Three dogs run across a snowy field while their owner watches from the porch."]


def test_server_vectors_equal_the_encoders_for_vanilla_and_tp_of_one_model():
    from tpembed.serving import create_app

    configs = {name: resolve_config(name, {"device": "cpu"}).encoder_config() for name in NAMES}
    reference_model = load_model("smollm2-135m", device="cpu")  # an independent copy
    reference = {name: Encoder(reference_model, config=config) for name, config in configs.items()}
    with running(create_app(configs)) as server:
        server.wait_loaded()
        assert server.served.workers[NAMES[0]] is server.served.workers[NAMES[1]]  # one copy of the weights
        # /v1/models names each config's identity: the weights' hash and every vector-changing setting
        listed = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
        for name in NAMES:
            assert listed[name]["identity"] == identity_digest(encoder_identity(reference[name]))
        assert listed[NAMES[0]]["identity"] != listed[NAMES[1]]["identity"]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        for name in NAMES:
            expected = reference[name].encode(SENTENCES)
            for options in ({}, {"encoding_format": "float"}):  # the client's default is base64
                response = client.embeddings.create(model=name, input=SENTENCES, **options)
                got = np.array([d.embedding for d in response.data], dtype=np.float32)
                assert got.shape == (4, 576)
                # the server's worker thread may run torch with another OpenMP thread count than this
                # one (a test before may have limited it): float noise, far below any plan's difference
                assert_vectors_close(got, expected, rel=1e-5)
        # usage counts the prompt: PromptEOL around each sentence, as the tokenizer makes it
        template = PROMPTS["prompteol"].templates[0]
        tokenizer = reference_model.tokenizer
        usage = client.embeddings.create(model=NAMES[0], input=SENTENCES).usage
        prompt_tokens = sum(
            len(tokenizer(render(template, normalize_sentence(s), use_placeholder=False).text)["input_ids"])
            for s in SENTENCES
        )
        assert usage.prompt_tokens == usage.total_tokens == prompt_tokens
        tp_usage = client.embeddings.create(model=NAMES[1], input=SENTENCES).usage
        assert tp_usage.prompt_tokens == prompt_tokens + 2 * len(SENTENCES)  # <PST> and its space token
