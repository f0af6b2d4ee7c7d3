"""The server fuzzed from its own OpenAPI schema (schemathesis): every route, valid and invalid requests.

Schemathesis reads ``/openapi.json`` from a running server on the tiny model, generates requests
that fit it (positive) and requests that break it (negative, for the route that takes a body), sends
them and checks each answer: no 5xx, the status is one the schema lists, the body and its media type
conform to the schema, valid requests are accepted and invalid ones refused. On top of that every
4xx/5xx body must be OpenAI's error object, and every 200 of ``/v1/embeddings`` must hold one vector
per input. Generation is derandomized (a fixed seed, no example database), so a run cannot flake.
"""

from __future__ import annotations

import base64
import collections
import time

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from .conftest import running

# small limits: valid requests stay cheap to encode, and the fuzzer can cross them (413) with little data
MAX_INPUTS, MAX_CHARS = 8, 64
EXAMPLES = {GenerationMode.POSITIVE: 520, GenerationMode.NEGATIVE: 520}  # per mode, for the route with a body
MIN_REQUESTS = 1000
ERROR_KEYS = {"message", "type", "param", "code"}


def _config() -> SchemathesisConfig:
    # a body over --max-inputs-per-request / --max-input-chars breaks the schema's maxItems/maxLength:
    # 413 is the right refusal for it (schemathesis' default list has no 413)
    return SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "404", "413"]}}}
    )


def _check_openai_shape(label: str, response, case) -> None:
    """Every error is OpenAI's ``{"error": {...}}``; every 200 of /v1/embeddings one vector per input."""
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ERROR_KEYS and isinstance(error["message"], str) and error["message"], (label, error)
        return
    if label == "POST /v1/embeddings" and response.status_code == 200:
        body = case.body
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = response.json()["data"]
        assert [d["index"] for d in data] == list(range(len(inputs))), (body, data)
        for d in data:
            if body.get("encoding_format") == "base64":
                assert len(base64.b64decode(d["embedding"])) == 32 * 4  # 32 little-endian float32
            else:
                assert len(d["embedding"]) == 32


def _fuzz(operation, mode: GenerationMode, session, sent: collections.Counter, statuses: collections.Counter) -> None:
    """Send EXAMPLES[mode] generated requests to one operation, each checked as it is answered."""
    label = operation.label

    @settings(max_examples=EXAMPLES[mode], derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        response = case.call_and_validate(session=session)
        sent[label] += 1
        statuses[(label, mode.value, response.status_code)] += 1
        _check_openai_shape(label, response, case)

    fuzz()


def test_the_server_conforms_to_its_own_openapi_schema_under_fuzzing(tiny_app_factory):
    import requests
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one intra-op thread encodes a tiny batch fastest
    try:
        app = tiny_app_factory(max_inputs_per_request=MAX_INPUTS, max_input_chars=MAX_CHARS, max_wait_ms=0)
        with running(app) as server:
            server.wait_loaded()
            schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=_config())
            sent: collections.Counter = collections.Counter()
            statuses: collections.Counter = collections.Counter()
            start = time.monotonic()
            with requests.Session() as session:
                for result in schema.get_all_operations():
                    operation = result.ok()
                    # a GET without parameters has one request only, and nothing to make invalid
                    has_input = bool(list(operation.body)) or bool(list(operation.iter_parameters()))
                    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else [
                        GenerationMode.POSITIVE]
                    for mode in modes:
                        _fuzz(operation, mode, session, sent, statuses)
            elapsed = time.monotonic() - start
            metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        torch.set_num_threads(threads)
    print(f"\n{sum(sent.values())} generated requests in {elapsed:.1f}s: {dict(sent)}")
    for key, count in sorted(statuses.items()):
        print("  ", *key, count)
    assert set(sent) == {"POST /v1/embeddings", "GET /v1/models", "GET /health", "GET /metrics"}  # every route
    assert sum(sent.values()) >= MIN_REQUESTS
    # the fuzzer reached the model (valid requests were embedded) and the refusals (invalid ones, over limits)
    embedded = {status for (label, mode, status) in statuses if label == "POST /v1/embeddings" and mode == "positive"}
    refused = {status for (label, mode, status) in statuses if label == "POST /v1/embeddings" and mode == "negative"}
    assert embedded == {200} and {400, 413} <= refused, statuses
    assert "tpembed_requests_total{status=\"500\"}" not in metrics


def test_the_schema_documents_what_the_server_answers(tiny_app_factory):
    with running(tiny_app_factory()) as server:
        server.wait_loaded()
        schema = httpx.get(f"{server.url}/openapi.json").json()
        paths = schema["paths"]
        metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(metrics) == ["text/plain"]  # Prometheus' text format, not JSON
        assert httpx.get(f"{server.url}/metrics").headers["content-type"].startswith("text/plain")
        embeddings = paths["/v1/embeddings"]["post"]["responses"]
        assert sorted(embeddings) == ["200", "400", "401", "404", "413", "500", "503"]  # no FastAPI 422
        for status, response in embeddings.items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        for path, operations in paths.items():  # every error of every route: JSON, OpenAI's error object
            for status, response in operations["get" if "get" in operations else "post"]["responses"].items():
                if int(status) >= 400:
                    expected = "Unhealthy" if (path, status) == ("/health", "503") else "ErrorResponse"
                    assert response["content"] == {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{expected}"}}
                    }, (path, status)
        error = schema["components"]["schemas"]["ErrorDetail"]
        assert set(error["properties"]) == set(error["required"]) == ERROR_KEYS
        # input: a string (empty too: docs/guides/input-rules.md) or a non-empty list of them, and the server agrees
        text, texts = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]["input"]["anyOf"]
        assert "minLength" not in text and texts["minItems"] == 1 and "minLength" not in texts["items"]
        refused = httpx.post(f"{server.url}/v1/embeddings", json={"model": "tiny", "input": []})
        assert refused.status_code == 400 and set(refused.json()["error"]) == ERROR_KEYS
        for empty in ("", [""]):
            assert httpx.post(f"{server.url}/v1/embeddings", json={"model": "tiny", "input": empty}).status_code == 200
        assert "HTTPValidationError" not in schema["components"]["schemas"]
