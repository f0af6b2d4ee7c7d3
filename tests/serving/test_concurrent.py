"""64 concurrent clients on two configs of one model get their own vectors, in their own order."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai

from .conftest import metric, running, wait_until

WORDS = "a man woman cat dog is playing slicing running guitar onion field the of on with quickly".split()


def _requests(n: int) -> list[tuple[str, list[str], str]]:
    """(config, sentences of 1-12 words, encoding) per client; sizes 1-16 sentences, some repeated.

    Encoding None: the client's default (it asks for base64 and decodes it)."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 16))]
        out.append(("tiny-tp" if i % 2 else "tiny", sentences, "float" if i % 3 == 0 else None))
    return out


def test_64_concurrent_clients_on_two_configs_get_their_solo_vectors(tiny_app_factory, tiny_reference):
    requests = _requests(64)
    alone = [tiny_reference[name].encode(sentences, show_progress_bar=False) for name, sentences, _ in requests]
    with running(tiny_app_factory(max_round_sentences=32, max_wait_ms=20)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        lock = next(iter(worker.encoders.values())).loaded.lock
        start = threading.Barrier(len(requests))

        def client(i: int) -> np.ndarray:
            name, sentences, encoding = requests[i]
            api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
            start.wait()
            options = {"encoding_format": encoding} if encoding else {}
            response = api.embeddings.create(model=name, input=sentences, **options)
            assert [d.index for d in response.data] == list(range(len(sentences)))
            return np.array([d.embedding for d in response.data], dtype=np.float32)

        with ThreadPoolExecutor(len(requests)) as pool:
            with lock:  # hold the model until every request is in: the worker must merge them
                futures = [pool.submit(client, i) for i in range(len(requests))]
                wait_until(lambda: worker.running + worker.waiting == len(requests), what="all requests queued")
            results = [f.result() for f in futures]
        text = httpx.get(f"{server.url}/metrics").text
    for got, expected in zip(results, alone):
        # other batch neighbours and padding change float rounding only (the relative 1e-4)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    rounds = metric(text, "tpembed_batch_sentences_count")
    # one encode call per config per round; without merging there would be one per request
    assert rounds < len(requests) * 0.75, f"{rounds} encode calls for {len(requests)} requests: no dynamic batching"
    assert metric(text, "tpembed_requests_total", {"status": "200"}) == len(requests)
    assert metric(text, "tpembed_sentences_total", {"model": "tiny-tp"}) == sum(
        len(s) for name, s, _ in requests if name == "tiny-tp"
    )
