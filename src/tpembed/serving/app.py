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
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import EncoderConfig
from .errors import ApiError, error_body
from .metrics import Metrics
from .registry import Loader, ServedModels
from .schema import EmbeddingRequest, EmbeddingResponse, ErrorResponse, Health, ModelList, Unhealthy
from .worker import Embeddings, EncodingFailed, Job, ModelWorker, QueueFull, ShuttingDown, WorkerDied

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


class _LimitBody:
    """ASGI middleware: a request body over ``max_bytes`` is refused with 413 without being read.

    A ``Content-Length`` over the limit is refused before one byte of the body is read; a body
    without one (chunked) is read up to the limit only. Bodies within the limit go to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.strip().isdigit():
            # the HTTP server has checked the header; it also ends the body at that length
            if int(length) > self.max_bytes:
                await self._refuse(send, f"{int(length)} bytes")
                return
            await self.app(scope, receive, send)
            return
        messages: list[dict] = []  # the body read so far (at most max_bytes), handed on to the app
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                messages.clear()
                await self._refuse(send, f"more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Callable, size: str) -> None:
        body = error_body(413, f"the request body has {size}; the limit is {self.max_bytes} bytes (--max-body-mb)",
                          code="request_too_large")
        content = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read: this connection ends here
        ]})
        await send({"type": "http.response.body", "body": content})


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body was read already, so only that message is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _wait_for(job: Job, worker: ModelWorker, request: Request) -> Embeddings | None:
    """The job's result, or None when the client disconnected first (its job is then dropped)."""
    result = asyncio.wrap_future(job.future)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not result.done():
        worker.cancel(job)  # out of the queue now: no work is left behind for a client that is gone
        result.cancel()  # a job the worker already runs finishes, and its answer is dropped
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
    max_body_bytes: int = 32 * 2**20,
    shutdown_timeout: float | None = 60.0,
    loader: Loader | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """An OpenAI-compatible embeddings server for the named ``configs`` (request ``model`` = a name).

    Models load in the background when the app starts; ``/health`` answers 503 until they are
    ready. ``api_key`` (when given) is required as ``Authorization: Bearer KEY`` on ``/v1/*``.
    Each loaded model's worker merges waiting requests into rounds of up to ``max_round_sentences``
    (waiting at most ``max_wait_ms`` to fill one) and holds at most ``max_queue`` waiting requests
    (more: 503). A request body over ``max_body_bytes`` is refused (413) without being read.
    ``loader`` loads a config's model (default: :func:`~tpembed.models.load_checked`).

    ``on_load_error`` is called when a load fails or a model worker dies (``/health`` is 503 from
    then on, with the reason; ``tpembed serve`` stops then). At shutdown, the rounds in progress are
    waited for at most ``shutdown_timeout`` seconds (None: no limit).
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
        # uvicorn has finished the requests in flight by now (or given up on them after its timeout)
        if not served.stop(shutdown_timeout):
            log.warning("a model worker is still running after %ss; exiting without it", shutdown_timeout)

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

    def unavailable(name: str) -> ApiError:
        """503 for a model that cannot take requests: still loading, failed to load, or its worker died."""
        if served.state == "failed":
            code = "worker_died" if served.worker_died else "load_failed"
            return ApiError(503, f"model {name!r} is unavailable: {served.error}", code=code, kind="server_error")
        return ApiError(503, f"model {name!r} is not loaded yet ({served.state}); retry shortly",
                        code="model_loading", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _crash(_: Request, err: Exception) -> Response:
        log.exception("internal error", exc_info=err)
        return _json(error_body(500, "internal server error (see the server's log)"), 500)

    @app.post(EMBEDDINGS_PATH, dependencies=[Depends(check_key)], response_class=Response,
              responses=_responses({200: (EmbeddingResponse, "The vectors, in input order"),
                                    **_errors(400, 401, 404, 413, 500, 503)}))
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
            raise unavailable(body.model)
        dim = served.dimensions[body.model]
        if body.dimensions is not None and body.dimensions != dim:
            raise ApiError(400, f"dimensions={body.dimensions} is not supported: {body.model} gives {dim}-dimensional "
                           f"vectors and they are not truncated (omit dimensions or send {dim})",
                           param="dimensions", code="invalid_dimensions")
        worker = served.workers[body.model]
        try:
            job = worker.submit(body.model, body.input)
            result = await _wait_for(job, worker, request)
        except QueueFull as err:
            raise ApiError(503, f"the model is overloaded: {err}; retry later", code="model_overloaded",
                           headers={"Retry-After": "1"}) from None
        except ShuttingDown as err:
            raise ApiError(503, str(err), code="shutting_down") from None
        except WorkerDied as err:
            raise ApiError(503, f"model {body.model!r} is unavailable: {err}", code="worker_died",
                           kind="server_error") from None
        except ValueError as err:  # the Encoder refused this request's text
            raise ApiError(400, str(err), param="input") from None
        except EncodingFailed as err:  # the round this request was in failed (not its text): the next may not
            raise ApiError(500, f"encoding failed: {err}; the server goes on, the request may be retried",
                           code="encoding_failed") from None
        if result is None:
            return Response(status_code=CLIENT_CLOSED)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(result.vectors)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return _json({"object": "list", "data": data, "model": body.model, "usage": usage})

    @app.get("/v1/models", dependencies=[Depends(check_key)], response_class=Response,
             responses=_responses({200: (ModelList, "The served names"), **_errors(401, 500)}))
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

    @app.get("/health", response_class=Response,
             responses=_responses({200: (Health, "Every model is loaded and its worker runs"),
                                   503: (Unhealthy, "Loading, a failed load or a dead worker: the reason is in error"),
                                   **_errors(500)}))
    async def health() -> Response:
        """200 once every model is loaded; 503 while loading, after a failed load or once a worker died.

        A 503 carries OpenAI's ``error`` object (its ``message`` says why) beside ``status``.
        """
        body: dict[str, Any] = {"status": served.state, "models": list(served.configs)}
        if served.state == "ready":
            return _json(body)
        if served.state == "failed":
            code = "worker_died" if served.worker_died else "load_failed"
            body.update(error_body(503, served.error or "failed", code=code, kind="server_error"))
        else:
            body.update(error_body(503, f"the models are not loaded yet ({served.state})", code="model_loading"))
        return _json(body, 503)

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus metrics in the text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **_responses(_errors(500))})
    async def prometheus() -> Response:
        """Prometheus metrics (text format)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        """FastAPI's schema made to say what this server does (see :func:`_document`)."""
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        _document(schema, served, api_key=api_key is not None, max_inputs=max_inputs_per_request,
                  max_chars=max_input_chars)
        if served.state == "ready":  # the dimensions are known: this one is final
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_LimitBody, max_bytes=max_body_bytes)
    app.add_middleware(_CountRequests, metrics=metrics)  # outside: a 413 for a body is counted too
    return app


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: not JSON, a missing or wrong field, or dimensions other than the model's",
    401: "Missing or wrong API key (when the server has one)",
    404: "The model is not served here",
    413: "Too large: the body (--max-body-mb), the inputs (--max-inputs-per-request) or one input (--max-input-chars)",
    500: "An internal error (/v1/embeddings: the encoding round this request was in failed, for example out of "
    "memory); the server goes on",
    503: "Overloaded (the queue is full), loading, shutting down, or the model's worker died",
}


def _errors(*statuses: int) -> dict[int, tuple[type, str]]:
    return {status: (ErrorResponse, _ERROR_DESCRIPTIONS[status]) for status in statuses}


def _responses(spec: Mapping[int, tuple[type, str]]) -> dict[int | str, dict[str, Any]]:
    """FastAPI's ``responses`` for ``{status: (model, description)}`` (JSON bodies)."""
    return {status: {"model": model, "description": description} for status, (model, description) in spec.items()}


def _document(
    schema: dict[str, Any], served: Any, *, api_key: bool, max_inputs: int, max_chars: int
) -> None:
    """Make FastAPI's generated schema say what this server does, in place.

    FastAPI lists a 422 for every route with a body, in its own shape: this server answers 400 in
    OpenAI's (the routes list their real errors). ``model`` is one of the served names (others:
    404), ``input`` is within the limits (more: 413), ``dimensions`` (once the models are loaded) is
    the served models' own dimension, and ``/v1/*`` needs the API key when the server has one.
    """
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                if int(status) >= 400:  # JSON, whatever the route's own media type (/metrics: text)
                    content = response.get("content", {})
                    response["content"] = {"application/json": next(iter(content.values()), {})}
            if api_key and path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
    components = schema.setdefault("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    if api_key:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    request = components.get("schemas", {}).get("EmbeddingRequest")
    if request is None:
        return
    props = request["properties"]
    props["model"]["enum"] = list(served.configs)
    text, texts = props["input"]["anyOf"]
    text["maxLength"] = texts["items"]["maxLength"] = max_chars
    texts["maxItems"] = max_inputs
    dimensions = sorted(set(served.dimensions.values())) if served.state == "ready" else []
    if dimensions:
        props["dimensions"] = {
            "anyOf": [{"type": "integer", "enum": dimensions}, {"type": "null"}], "title": "Dimensions",
            "description": "the model's own dimension only (vectors are not truncated); omit it or send it",
        }
