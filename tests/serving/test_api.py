"""The HTTP API on tiny models: OpenAI's schema, every error, auth, limits, queue, health, metrics."""

from __future__ import annotations

import base64
import json
import socket
import threading

import httpx
import numpy as np
import openai
import pytest

from conftest import assert_vectors_close

from .conftest import TINY_CONFIGS, metric, running, tiny_loader, wait_until

SENTENCES = ["a man is playing a guitar .", "hi", "the cat sat on the mat and looked at the dog .", "hi"]


def post(server, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60, **kwargs)


def test_openai_client_gets_the_library_vectors_in_both_formats(tiny_app_factory, tiny_reference):
    with running(tiny_app_factory()) as server:
        server.wait_loaded()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        for name, encoder in tiny_reference.items():
            expected = encoder.encode(SENTENCES)
            default = client.embeddings.create(model=name, input=SENTENCES)  # the client asks for base64
            floats = client.embeddings.create(model=name, input=SENTENCES, encoding_format="float")
            for response in (default, floats):
                assert response.model == name and [d.index for d in response.data] == [0, 1, 2, 3]
                got = np.array([d.embedding for d in response.data], dtype=np.float32)
                # the same batches as alone; the worker thread may sum in another order (OpenMP threads)
                assert_vectors_close(got, expected, rel=1e-5)
                assert response.usage.prompt_tokens == response.usage.total_tokens == sum(
                    encoder.count_tokens(SENTENCES)
                )
            single = client.embeddings.create(model=name, input=SENTENCES[0], encoding_format="float")
            assert_vectors_close(np.float32([single.data[0].embedding]), encoder.encode([SENTENCES[0]]), rel=1e-5)
        # base64 is little-endian float32, read without the client's help
        raw = post(server, {"model": "tiny-tp", "input": SENTENCES, "encoding_format": "base64"}).json()
        decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
        assert_vectors_close(decoded, tiny_reference["tiny-tp"].encode(SENTENCES), rel=1e-5)
        assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"
        # TP and vanilla differ (the two names are not one config served twice)
        assert not np.allclose(decoded, tiny_reference["tiny"].encode(SENTENCES))
        assert [m.id for m in client.models.list()] == list(TINY_CONFIGS)
        # each entry carries its identity digest; in-memory weights have none (null), the shape stays OpenAI's
        listed = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert all(m["object"] == "model" and m["owned_by"] == "tpembed" and m["identity"] is None for m in listed)
        # configs of one model share its weights and its worker
        assert server.served.workers["tiny"] is server.served.workers["tiny-tp"]


BAD_REQUESTS = [
    ({"model": "tiny", "input": [1, 2, 3]}, 400, "token ids"),
    ({"model": "tiny", "input": [[1, 2], [3]]}, 400, "check_embedding_ctx_length=False"),
    ({"model": "tiny", "input": []}, 400, "empty list"),
    ({"model": "tiny", "input": ["ok", 3.5]}, 400, "input[1] must be a string"),
    ({"model": "tiny", "input": {"a": 1}}, 400, "string or a list of strings"),
    ({"model": "tiny"}, 400, "input"),
    ({"input": "x"}, 400, "model"),
    ({"model": "tiny", "input": "x", "dimensions": 8}, 400, "dimensions=8 is not supported"),
    ({"model": "tiny", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": "nope", "input": "x"}, 404, "'nope' is not served here"),
    ({"model": "tiny", "input": ["a"] * 5}, 413, "the limit is 4"),
    ({"model": "tiny", "input": ["a", "b" * 51]}, 413, "input[1] has 51 characters; the limit is 50"),
]


def test_bad_requests_get_openai_shaped_errors_and_do_not_disturb_others(tiny_app_factory, tiny_reference):
    with running(tiny_app_factory(max_inputs_per_request=4, max_input_chars=50)) as server:
        server.wait_loaded()
        for body, status, words in BAD_REQUESTS:
            response = post(server, body)
            assert response.status_code == status, (body, response.text)
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and words in error["message"], (body, error)
        for content in (b"{not json", b"\xff\xfe", "{\"model\": \"tiny\", \"input\": \"\\ud800\"}".encode()):
            response = httpx.post(f"{server.url}/v1/embeddings", content=content,
                                  headers={"content-type": "application/json"})
            assert response.status_code == 400 and "error" in response.json(), response.text
        assert httpx.get(f"{server.url}/v2/nothing").json()["error"]["type"] == "not_found_error"
        assert post(server, {"model": "tiny", "input": "x", "dimensions": 32}).status_code == 200
        # the openai client maps them to its exceptions
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="x")
        with pytest.raises(openai.BadRequestError, match="token ids"):
            client.embeddings.create(model="tiny", input=[[1, 2, 3]])
        # and the server still answers correctly
        got = client.embeddings.create(model="tiny", input=SENTENCES[:2])
        expected = tiny_reference["tiny"].encode(SENTENCES[:2])
        assert_vectors_close(np.float32([d.embedding for d in got.data]), expected, rel=1e-5)


def test_an_empty_string_is_a_text_with_the_library_vector(tiny_app_factory, tiny_reference):
    """The one empty-input rule (docs/guides/input-rules.md): "" is embedded, the same vector as Encoder.encode("")."""
    with running(tiny_app_factory()) as server:
        server.wait_loaded()
        for name, encoder in tiny_reference.items():
            for body in ({"model": name, "input": ""}, {"model": name, "input": ["ok", ""]}):
                response = post(server, {**body, "encoding_format": "float"})
                assert response.status_code == 200, response.text
                got = np.float32([d["embedding"] for d in response.json()["data"]])
                expected = encoder.encode(body["input"] if isinstance(body["input"], list) else [body["input"]])
                assert_vectors_close(got, expected, rel=1e-5)
            assert_vectors_close(got[1:], encoder.encode("")[None], rel=1e-5)


def test_api_key_is_required_on_v1_but_not_on_health(tiny_app_factory):
    with running(tiny_app_factory(api_key="s3cret")) as server:
        server.wait_loaded()
        body = {"model": "tiny", "input": "x"}
        assert post(server, body).status_code == 401
        wrong = post(server, body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert post(server, body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        assert httpx.get(f"{server.url}/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0).embeddings.create(
                model="tiny", input="x"
            )
        ok = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret").embeddings.create(model="tiny", input="x")
        assert len(ok.data[0].embedding) == 32


def test_health_is_503_until_the_models_are_loaded(tiny_app_factory):
    release = threading.Event()

    def slow_loader(config):
        assert release.wait(60)
        return tiny_loader(config)

    with running(tiny_app_factory(loader=slow_loader)) as server:
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        early = post(server, {"model": "tiny", "input": "x"})
        assert early.status_code == 503 and early.headers["retry-after"] and "not loaded yet" in early.text
        release.set()
        server.wait_loaded()
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert post(server, {"model": "tiny", "input": "x"}).status_code == 200


def test_a_failed_load_keeps_health_at_503_with_the_reason(tiny_app_factory):
    def broken_loader(config):
        raise OSError("no such model file")

    with running(tiny_app_factory(loader=broken_loader)) as server:
        assert not server.served.wait_loaded(timeout=30)
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        error = health.json()["error"]  # OpenAI's error object: the reason is its message
        assert "no such model file" in error["message"] and error["code"] == "load_failed", error
        refused = post(server, {"model": "tiny", "input": "x"})
        assert refused.status_code == 503 and "no such model file" in refused.json()["error"]["message"]


def test_full_queue_answers_503_with_retry_after(tiny_app_factory):
    with running(tiny_app_factory(max_queue=1, max_wait_ms=0)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        results = {}
        lock = next(iter(worker.encoders.values())).loaded.lock
        with lock:  # the worker blocks on the model: requests pile up
            first = threading.Thread(target=lambda: results.setdefault("a", post(server, {"model": "tiny", "input": "a"})))
            first.start()
            wait_until(lambda: worker.running == 1, what="the first request to be taken")
            second = threading.Thread(
                target=lambda: results.setdefault("b", post(server, {"model": "tiny-tp", "input": "b"}))
            )
            second.start()
            wait_until(lambda: worker.waiting == 1, what="the second request to queue")
            full = post(server, {"model": "tiny", "input": "c"})
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["code"] == "model_overloaded"
        first.join(30)
        second.join(30)
        assert results["a"].status_code == results["b"].status_code == 200
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "tpembed_requests_total", {"status": "503"}) == 1
        assert metric(text, "tpembed_requests_total", {"status": "200"}) == 2


def _raw_post(url: str, body: dict) -> socket.socket:
    """Send one embeddings request on a socket of our own and leave it open (closing it: the client is gone)."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(payload), payload))
    return sock


def test_clients_that_disconnect_while_queued_leave_no_work_behind(tiny_app_factory):
    with running(tiny_app_factory(max_wait_ms=0)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        lock = next(iter(worker.encoders.values())).loaded.lock
        stayers: dict[int, httpx.Response] = {}
        stay = [["stay", str(i)] for i in range(4)]
        threads = [
            threading.Thread(target=lambda i=i: stayers.setdefault(i, post(server, {"model": "tiny", "input": stay[i]})))
            for i in range(len(stay))
        ]
        with lock:  # the worker blocks on the model: everything else queues behind the first request
            threads[0].start()
            wait_until(lambda: worker.running == 1, what="the first request to be taken")
            quitters = [_raw_post(server.url, {"model": "tiny-tp" if i % 2 else "tiny", "input": ["x", "y", "z"]})
                        for i in range(8)]
            for t in threads[1:]:
                t.start()
            wait_until(lambda: worker.waiting == 8 + 3, what="every request to queue")
            for sock in quitters:
                sock.close()  # these clients give up while their requests wait
            # the queue forgets them at once, while the model is still busy: no work is left behind
            wait_until(lambda: worker.waiting == 3, what="the abandoned requests to leave the queue")
            text = httpx.get(f"{server.url}/metrics").text
            assert metric(text, "tpembed_queue_depth") == 3
            assert metric(text, "tpembed_dropped_sentences_total") == 8 * 3
        for t in threads:
            t.join(30)
        assert [stayers[i].status_code for i in range(len(stay))] == [200] * len(stay)
        wait_until(lambda: worker.waiting == 0 and worker.running == 0, what="the worker to be idle")
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "tpembed_queue_depth") == 0
        # the dropped sentences never ran: only the clients that stayed were encoded
        assert metric(text, "tpembed_sentences_total", {"model": "tiny"}) == sum(map(len, stay))
        assert metric(text, "tpembed_sentences_total", {"model": "tiny-tp"}) == 0
        assert metric(text, "tpembed_requests_total", {"status": "499"}) == 8


def test_metrics_count_requests_sentences_tokens_and_batches(tiny_app_factory, tiny_reference):
    with running(tiny_app_factory()) as server:
        server.wait_loaded()
        assert post(server, {"model": "tiny", "input": SENTENCES}).status_code == 200
        assert post(server, {"model": "tiny-tp", "input": SENTENCES[:3]}).status_code == 200
        assert post(server, {"model": "tiny", "input": []}).status_code == 400
        assert post(server, {"model": "zzz", "input": "x"}).status_code == 404
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "tpembed_requests_total", {"status": "200"}) == 2
        assert metric(text, "tpembed_requests_total", {"status": "400"}) == 1
        assert metric(text, "tpembed_requests_total", {"status": "404"}) == 1
        assert metric(text, "tpembed_sentences_total", {"model": "tiny"}) == 4
        assert metric(text, "tpembed_sentences_total", {"model": "tiny-tp"}) == 3
        tokens = sum(tiny_reference["tiny"].count_tokens(SENTENCES))
        assert metric(text, "tpembed_tokens_total", {"model": "tiny"}) == tokens
        assert metric(text, "tpembed_batch_sentences_count") == 2
        assert metric(text, "tpembed_request_latency_seconds_count") == 4
        assert metric(text, "tpembed_queue_depth") == 0


def test_shutdown_finishes_the_requests_in_flight(tiny_app_factory, tiny_reference):
    server_ctx = running(tiny_app_factory(max_wait_ms=0))
    server = server_ctx.__enter__()
    server.wait_loaded()
    worker = server.served.workers["tiny"]
    lock = next(iter(worker.encoders.values())).loaded.lock
    results: dict[int, httpx.Response] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.setdefault(i, post(server, {"model": "tiny", "input": SENTENCES[i]})))
        for i in range(3)
    ]
    with lock:
        for t in threads:
            t.start()
        wait_until(lambda: worker.running + worker.waiting == 3, what="three requests in flight")
        server.server.should_exit = True  # what SIGTERM does: stop accepting, finish what is in flight
        wait_until(lambda: not _accepts(server.url), what="the server to stop accepting")
    server_ctx.__exit__(None, None, None)
    for i, t in enumerate(threads):
        t.join(30)
        assert results[i].status_code == 200
        # merged into one batch with the others: equal to alone up to float rounding (the 1e-4)
        np.testing.assert_allclose(
            np.float32(results[i].json()["data"][0]["embedding"]), tiny_reference["tiny"].encode(SENTENCES[i]),
            rtol=1e-4, atol=1e-5,
        )


def _accepts(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_a_request_the_encoder_refuses_fails_alone_not_its_round(tiny_app_factory, tiny_reference):
    with running(tiny_app_factory(max_wait_ms=0)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        encoder = worker.encoders["tiny"]
        real_encode = encoder.encode
        calls = []

        def picky_encode(sentences, **kwargs):  # stands in for any input the Encoder rejects
            calls.append(list(sentences))
            if "boom" in sentences:
                raise ValueError("this text cannot be encoded")
            return real_encode(sentences, **kwargs)

        encoder.encode = picky_encode
        results = {}
        bodies = {"blocker": "a", "good": ["hi", "the cat sat on the mat ."], "bad": ["x", "boom"]}
        threads = {
            k: threading.Thread(target=lambda k=k, v=v: results.setdefault(k, post(server, {"model": "tiny", "input": v})))
            for k, v in bodies.items()
        }
        with encoder.loaded.lock:
            threads["blocker"].start()
            wait_until(lambda: worker.running == 1, what="the first request to be taken")
            threads["good"].start()
            wait_until(lambda: worker.waiting == 1, what="the good request to queue")
            threads["bad"].start()
            wait_until(lambda: worker.waiting == 2, what="the bad request to queue")
        for t in threads.values():
            t.join(30)
        assert ["hi", "the cat sat on the mat .", "x", "boom"] in calls  # the two were merged, then retried apart
        bad = results["bad"]
        assert bad.status_code == 400 and "cannot be encoded" in bad.json()["error"]["message"]
        good = results["good"]
        assert good.status_code == 200
        assert_vectors_close(
            np.float32([d["embedding"] for d in good.json()["data"]]), tiny_reference["tiny"].encode(bodies["good"]),
            rel=1e-5,
        )
