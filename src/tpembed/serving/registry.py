"""The served configs: which name runs on which loaded model, loaded in the background.

Configs that name the same model (on the same device, in the same dtype) share one
:class:`LoadedModel` and one :class:`ModelWorker`: their weights are in memory once, and one
forward runs at a time on them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

from ..config import EncoderConfig
from ..models import LoadedModel
from .metrics import Metrics
from .worker import ModelWorker, WorkerDied

log = logging.getLogger("tpembed.serving")

Loader = Callable[[EncoderConfig], LoadedModel]


def default_loader(config: EncoderConfig) -> LoadedModel:
    """Load ``config.model`` after checking its layer settings against the model's config."""
    from ..models import load_checked

    return load_checked(config, progress=False)


def _model_key(config: EncoderConfig) -> tuple[str, str, str]:
    """What makes two configs share one copy of the weights."""
    return (config.model, config.device, config.dtype)


class ServedModels:
    """Named configs, their workers once loaded, and the loading state ``/health`` reports."""

    def __init__(
        self,
        configs: Mapping[str, EncoderConfig],
        metrics: Metrics,
        *,
        loader: Loader | None = None,
        max_round_sentences: int = 256,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not configs:
            raise ValueError("serve at least one config")
        self.configs = dict(configs)
        self.metrics = metrics
        self.loader = loader or default_loader
        self.worker_options = dict(
            max_round_sentences=max_round_sentences, max_wait_ms=max_wait_ms, max_queue=max_queue
        )
        self.on_error = on_error
        self.state: Literal["idle", "loading", "ready", "failed"] = "idle"
        self.error: str | None = None  # why the state is "failed": the load's error or a worker's death
        self.worker_died = False  # "failed" because a worker thread died (not the load)
        self.workers: dict[str, ModelWorker] = {}  # served name -> its model's worker
        self.dimensions: dict[str, int] = {}
        # served name -> identity digest (tpembed.identity) once loaded; None: no stable identity
        self.identities: dict[str, str | None] = {}
        self._all_workers: list[ModelWorker] = []
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()

    def start(self) -> None:
        """Load every model in a background thread (the server answers /health meanwhile)."""
        self.state = "loading"
        self._thread = threading.Thread(target=self._load_all, name="tpembed-loader", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading ended (True when every model is ready)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state == "ready"

    def _load_all(self) -> None:
        from ..encoder import Encoder
        from ..identity import encoder_identity, identity_digest

        groups: dict[tuple[str, str, str], dict[str, EncoderConfig]] = {}
        for name, config in self.configs.items():
            groups.setdefault(_model_key(config), {})[name] = config
        try:
            for configs in groups.values():
                loaded = self.loader(next(iter(configs.values())))
                encoders = {name: Encoder(loaded, config=config) for name, config in configs.items()}
                worker = ModelWorker(encoders, self.metrics, on_death=self._worker_died, **self.worker_options)
                worker.start()
                self._all_workers.append(worker)
                for name, encoder in encoders.items():
                    self.dimensions[name] = encoder.embedding_dim
                    identity = encoder_identity(encoder)
                    self.identities[name] = identity_digest(identity) if identity is not None else None
                    self.workers[name] = worker
                log.info("loaded %s for %s", loaded.identity.get("name", "model"), ", ".join(encoders))
        except Exception as err:  # noqa: BLE001  (reported by /health and on_error, not lost in a thread)
            self.state, self.error = "failed", f"{type(err).__name__}: {err}"
            log.error("loading failed: %s", self.error)
            if self.on_error is not None:
                self.on_error(err)
            return
        with self._state_lock:
            if self.state == "loading":  # not "failed": a worker may have died already
                self.state = "ready"
            ready = self.state == "ready"
        if ready:  # the one line that says the server can answer (/health is 200 from here on)
            log.info("ready: %s", ", ".join(
                f"{name} (identity {self.identities[name] or 'none'}, dim {self.dimensions[name]})" for name in self.configs
            ))

    def _worker_died(self, worker: ModelWorker) -> None:
        """A worker thread ended on an error: the server cannot serve its model any more."""
        with self._state_lock:
            self.state, self.error, self.worker_died = "failed", worker.error, True
        if self.on_error is not None:
            self.on_error(WorkerDied(worker.error))

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every worker (after the server has finished its requests).

        Waits at most ``timeout`` seconds in all for the rounds in progress (None: as long as they
        take); False when one is still running then (worker threads are daemons: they end with the
        process). A load still running is not waited for either.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stopped = True
        for worker in list(self._all_workers):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stopped = worker.stop(left) and stopped
        return stopped
