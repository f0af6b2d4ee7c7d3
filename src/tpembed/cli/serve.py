"""``tpembed serve``: an OpenAI-compatible embeddings server for one or more named configs."""

from __future__ import annotations

import signal
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import config_source, fail, user_errors


@app.command()
@config_source("many")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", envvar="TPEMBED_API_KEY", help="require 'Authorization: Bearer KEY' on /v1/*"),
    ] = None,
    max_batch_size: Annotated[
        Optional[int],
        typer.Option("--max-batch-size", min=1, help="sentences per forward pass, for every served config "
                     "(the same as --batch-size; default: each config's batch_size)"),
    ] = None,
    max_round_sentences: Annotated[
        int,
        typer.Option("--max-round-sentences", min=1, help="sentences of concurrent requests merged into one "
                     "length-sorted encode call (more: throughput, less: latency)"),
    ] = 256,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", min=0, help="how long the worker waits to fill a round")
    ] = 5.0,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=1, help="requests waiting per model before 503 'overloaded'")
    ] = 1024,
    max_inputs_per_request: Annotated[
        int, typer.Option("--max-inputs-per-request", min=1, help="inputs in one request (more: 413)")
    ] = 2048,
    max_input_chars: Annotated[
        int, typer.Option("--max-input-chars", min=1, help="characters in one input (more: 413)")
    ] = 100_000,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.001, help="MiB in one request body (more: 413, never read)")
    ] = 32.0,
    shutdown_timeout: Annotated[
        float, typer.Option("--shutdown-timeout", min=0, help="seconds SIGTERM waits for the requests in flight (0: no limit)")
    ] = 60.0,
    run_configs: dict[str, Any] | None = None,
) -> None:
    """Serve embeddings over HTTP with OpenAI's API (/v1/embeddings, /v1/models, /health, /metrics).

    Several named configs of one model share one copy of its weights. Ctrl-C or SIGTERM stops it
    gracefully (requests in flight are finished first, for at most --shutdown-timeout seconds).
    A model that fails to load or a model worker that dies stops it with exit status 2, so that a
    supervisor restarts it.
    """
    with user_errors():
        configs = {name: c.encoder_config() for name, c in (run_configs or {}).items()}
        if max_batch_size is not None:
            configs = {name: c.model_copy(update={"batch_size": max_batch_size}) for name, c in configs.items()}
        from ..models import check_before_loading

        for served_config in configs.values():
            check_before_loading(served_config)
    try:
        import uvicorn

        from ..serving import create_app
    except ImportError as err:
        fail(err)
    from ..models import load_checked

    server: uvicorn.Server | None = None

    def stop_on_error(err: BaseException) -> None:  # a failed load or a dead worker
        if server is not None:
            server.should_exit = True

    application = create_app(
        configs,
        api_key=api_key or None,
        max_round_sentences=max_round_sentences,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_inputs_per_request=max_inputs_per_request,
        max_input_chars=max_input_chars,
        max_body_bytes=int(max_body_mb * 2**20),
        shutdown_timeout=shutdown_timeout or None,
        loader=lambda c: load_checked(c, progress=True),
        on_load_error=stop_on_error,
    )
    _show_server_log()
    access = "API key required" if api_key else "open: no API key (set --api-key or $TPEMBED_API_KEY)"
    typer.echo(
        f"serving {', '.join(configs)} on http://{host}:{port}/v1 ({access}); loading the models "
        "(a 'ready:' line follows once /health answers 200)...",
        err=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(application, host=host, port=port, timeout_graceful_shutdown=shutdown_timeout or None)
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found: make that
    # one a no-op, so a clean stop exits 0 (as process managers expect) instead of dying by the signal
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    served = application.state.served
    if served.state == "failed":
        fail(served.error if served.worker_died else f"loading failed: {served.error}")
    if not server.started:
        raise typer.Exit(1)  # uvicorn has said why (port in use, ...)


def _show_server_log() -> None:
    """Show tpembed's server log (model loaded, ready with each identity digest, errors) beside
    Uvicorn's, in its format; Uvicorn configures only its own loggers."""
    import logging

    log = logging.getLogger("tpembed.serving")
    if log.handlers:
        return
    try:
        from uvicorn.logging import DefaultFormatter

        formatter: logging.Formatter = DefaultFormatter("%(levelprefix)s %(message)s")
    except ImportError:  # pragma: no cover
        formatter = logging.Formatter("%(levelname)s: %(message)s")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
