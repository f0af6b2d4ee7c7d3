"""The FastAPI application: ``/v1/embeddings``, ``/v1/models``, ``/health``, ``/metrics``."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import EncoderConfig
from .errors import ApiError, error_body
from .metrics import Metrics
from .registry import Loader, ServedModels
from .schema import EmbeddingRequest
from .worker import Embeddings, Job, QueueFull, ShuttingDown

log = logging.getLogger("tpembed.serving")

EMBEDDINGS_PATH = "/v1/embeddings"
CLIENT_CLOSED = 499  # nginx's status for "the client went away first" (only ever seen in /metrics)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps straight away: FastAPI's encoder walks every float of every vector in Python
    return Response(json.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """float: a JSON list (float32 values, exact as doubles); base64: little-endian float32 bytes, as OpenAI."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


class _CountRequests:
    """ASGI middleware: status and latency of every embeddings request, errors included."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != EMBEDDINGS_PATH:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(str(status)).inc()
            self.metrics.latency.observe(time.perf_counter() - start)


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body was read already, so only that message is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _wait_for(job: Job, request: Request) -> Embeddings | None:
    """The job's result, or None when the client disconnected first (its job is then dropped)."""
    result = asyncio.wrap_future(job.future)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not result.done():
        result.cancel()  # cancels the job's future: the worker drops it if it has not started it
        return None
    return result.result()


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    """One readable line from FastAPI's validation errors, and the field they concern."""
    parts, param = [], None
    for e in err.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            msg = f"the request body is not valid JSON ({e.get('ctx', {}).get('error', msg)})"
            loc = []
        param = param or (loc[0] if loc else None)
        where = ".".join(loc)
        parts.append(f"{where}: {msg}" if where and not msg.startswith(where) else msg)
    return "; ".join(parts) or "invalid request", param


def create_app(
    configs: Mapping[str, EncoderConfig],
    *,
    api_key: str | None = None,
    max_round_sentences: int = 256,
    max_wait_ms: float = 5.0,
    max_queue: int = 1024,
    max_inputs_per_request: int = 2048,
    max_input_chars: int = 100_000,
    loader: Loader | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """An OpenAI-compatible embeddings server for the named ``configs`` (request ``model`` = a name).

    Models load in the background when the app starts; ``/health`` answers 503 until they are
    ready. ``api_key`` (when given) is required as ``Authorization: Bearer KEY`` on ``/v1/*``.
    Each loaded model's worker merges waiting requests into rounds of up to ``max_round_sentences``
    (waiting at most ``max_wait_ms`` to fill one) and holds at most ``max_queue`` waiting requests
    (more: 503). ``loader`` loads a config's model (default: :func:`~tpembed.models.load_checked`).
    """
    metrics = Metrics()
    served = ServedModels(
        configs, metrics, loader=loader, max_round_sentences=max_round_sentences, max_wait_ms=max_wait_ms,
        max_queue=max_queue, on_error=on_load_error,
    )
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        served.start()
        yield
        served.stop()  # uvicorn has finished the requests in flight by now

    app = FastAPI(title="tpembed", summary="OpenAI-compatible sentence embeddings with Token Prepending",
                  lifespan=lifespan)
    app.state.served = served
    app.state.metrics = metrics

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> Response:
        return _json(err.body(), err.status, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> Response:
        message, param = _validation_message(err)
        return _json(error_body(400, message, param=param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> Response:
        return _json(error_body(err.status_code, str(err.detail)), err.status_code, getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, err: Exception) -> Response:
        log.exception("internal error", exc_info=err)
        return _json(error_body(500, "internal server error (see the server's log)"), 500)

    @app.post(EMBEDDINGS_PATH, dependencies=[Depends(check_key)])
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        """Embed ``input`` with the served config named by ``model``."""
        if body.model not in served.configs:
            raise ApiError(404, f"model {body.model!r} is not served here; served: {', '.join(served.configs)}",
                           param="model", code="model_not_found")
        if len(body.input) > max_inputs_per_request:
            raise ApiError(413, f"{len(body.input)} inputs in one request; the limit is {max_inputs_per_request} "
                           "(--max-inputs-per-request): split the request", param="input", code="too_many_inputs")
        too_long = [i for i, s in enumerate(body.input) if len(s) > max_input_chars]
        if too_long:
            raise ApiError(413, f"input[{too_long[0]}] has {len(body.input[too_long[0]])} characters; the limit is "
                           f"{max_input_chars} (--max-input-chars)", param="input", code="input_too_long")
        if served.state != "ready" or body.model not in served.workers:
            raise ApiError(503, f"model {body.model!r} is not loaded yet ({served.state}); retry shortly",
                           code="model_loading", headers={"Retry-After": "5"})
        dim = served.dimensions[body.model]
        if body.dimensions is not None and body.dimensions != dim:
            raise ApiError(400, f"dimensions={body.dimensions} is not supported: {body.model} gives {dim}-dimensional "
                           f"vectors and they are not truncated (omit dimensions or send {dim})",
                           param="dimensions", code="invalid_dimensions")
        try:
            job = served.workers[body.model].submit(body.model, body.input)
        except QueueFull as err:
            raise ApiError(503, f"the model is overloaded: {err}; retry later", code="model_overloaded",
                           headers={"Retry-After": "1"}) from None
        except ShuttingDown as err:
            raise ApiError(503, str(err), code="shutting_down") from None
        try:
            result = await _wait_for(job, request)
        except ValueError as err:  # the Encoder refused this request's text
            raise ApiError(400, str(err), param="input") from None
        except ShuttingDown as err:
            raise ApiError(503, str(err), code="shutting_down") from None
        if result is None:
            return Response(status_code=CLIENT_CLOSED)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(result.vectors)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return _json({"object": "list", "data": data, "model": body.model, "usage": usage})

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def models() -> Response:
        """The served config names (what ``model`` may be), with each one's identity once loaded.

        ``identity`` is the digest of :func:`tpembed.identity.encoder_identity` (the weights and
        every setting that changes a vector): two names with the same identity give the same
        vectors. It is null while loading and for a model without a stable identity.
        """
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "tpembed",
             "identity": served.identities.get(name)}
            for name in served.configs
        ]
        return _json({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> Response:
        """200 once every model is loaded; 503 while loading or after a failed load."""
        body: dict[str, Any] = {"status": served.state, "models": list(served.configs)}
        if served.error:
            body["error"] = served.error
        return _json(body, 200 if served.state == "ready" else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics (text format)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(_CountRequests, metrics=metrics)
    return app
