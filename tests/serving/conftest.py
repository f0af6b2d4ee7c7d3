"""Fixtures for the server tests: a real uvicorn server on a free loopback port, tiny shared models."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import make_model, make_tokenizer

from tpembed.config import EncoderConfig
from tpembed.models import LoadedModel, prepare_model

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

# two configs of one tiny random Llama (4 layers): vanilla and TP, as the server shares them
TINY_CONFIGS = {
    "tiny": EncoderConfig(model="tiny-llama", use_which_plan="vanilla", device="cpu", batch_size=8),
    "tiny-tp": EncoderConfig(model="tiny-llama", tp_starting_index=1, tp_exiting_index=3, device="cpu", batch_size=8),
    # post-processing and ensembles must reach the wire as the library gives them
    "tiny-recipe": EncoderConfig(model="tiny-llama", use_which_plan="vanilla", demo_ensemble=["storm", ["jockey", "chef"]],
                                 embed_filter=1.5, cp_layer=1, cp_alpha=0.5, device="cpu", batch_size=8),
}


def tiny_loader(config: EncoderConfig) -> LoadedModel:
    """The same random weights every call (seeded), so a reference Encoder can load its own copy."""
    return prepare_model(make_model("llama"), make_tokenizer(), {"name": config.model})


class Server:
    """A uvicorn server in a thread; ``stop()`` does what SIGTERM does (should_exit)."""

    def __init__(self, app) -> None:
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no race for the port
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            assert self.thread.is_alive(), "the server thread died"
            time.sleep(0.02)

    @property
    def served(self):
        return self.app.state.served

    def wait_loaded(self) -> None:
        assert self.served.wait_loaded(timeout=120), self.served.error

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive()


@contextmanager
def running(app) -> Iterator[Server]:
    """Serve ``app`` for the block, then shut it down as SIGTERM would."""
    server = Server(app)
    try:
        yield server
    finally:
        server.stop()


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` (bounded: fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or all(sample.labels.get(k) == v for k, v in labels.items())):
                return sample.value
    return 0.0


@pytest.fixture()
def tiny_app_factory():
    """create_app over the two tiny configs (keyword overrides go to create_app)."""
    from tpembed.serving import create_app

    def factory(**options):
        options.setdefault("loader", tiny_loader)
        return create_app(TINY_CONFIGS, **options)

    return factory


@pytest.fixture(scope="module")
def tiny_reference():
    """Encoders of an independent copy of the tiny model, one per served name."""
    from tpembed import Encoder

    loaded = tiny_loader(TINY_CONFIGS["tiny"])
    return {name: Encoder(loaded, config=config) for name, config in TINY_CONFIGS.items()}
