"""One model worker: a thread that owns a loaded model and merges concurrent requests into batches.

Requests wait in a bounded queue. The worker takes the requests at its head as one round
(waiting at most ``max_wait_ms`` for more, up to ``max_round_sentences`` sentences), runs each
served config's share as one :meth:`Encoder.encode` call (length-sorted forward batches of the
config's ``batch_size`` rows under its ``max_batch_tokens``, order restored) and scatters the
vectors back. A larger round sorts more sentences by length (less padding, more throughput);
every request in it is answered when the round ends (more latency). Configs that share the model
share this worker, so one forward runs at a time on it; the Encoder's lock keeps their per-call
settings apart.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..encoder import Encoder
from ..memory import release_free_memory
from .metrics import Metrics

log = logging.getLogger("tpembed.serving")


class QueueFull(Exception):
    """The worker already has ``max_queue`` requests waiting."""


class ShuttingDown(Exception):
    """The worker stopped before it reached the request."""


class WorkerDied(Exception):
    """The worker thread ended on an error: nothing more will run on its model."""


class EncodingFailed(Exception):
    """The encode call of a round raised (not the request's fault): every request of the round fails."""


@dataclass
class Embeddings:
    """One request's answer: its vectors in input order and the prompt tokens they took."""

    vectors: np.ndarray
    tokens: int


@dataclass
class Job:
    """One request waiting for the worker; cancelling its future drops it (the client went away)."""

    name: str
    sentences: list[str]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class ModelWorker:
    """The thread that runs every request for the served configs of one loaded model."""

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        metrics: Metrics,
        *,
        max_round_sentences: int = 256,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        on_death: Callable[[ModelWorker], None] | None = None,
    ) -> None:
        self.encoders = dict(encoders)
        self.metrics = metrics
        self.max_round_sentences = max_round_sentences
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._running = 0  # requests taken by the worker and not answered yet
        self._round: list[Job] = []  # the jobs of the round in progress
        self.on_death = on_death
        self.error: str | None = None  # why the thread died (None: alive, or stopped cleanly)
        self._thread = threading.Thread(target=self._run, name="tpembed-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the round in progress, refuse what still waits, and end the thread.

        Waits at most ``timeout`` seconds for the round in progress (None: as long as it takes);
        False when the thread is still running then (it is a daemon: it ends with the process).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """False once the thread died on an error (a worker not started yet or stopped cleanly counts as alive)."""
        return self.error is None

    def cancel(self, job: Job) -> bool:
        """Drop a job whose client went away: out of the queue at once when it still waits there.

        True when it was still queued (it will never run); False when the worker already took it.
        """
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return False
            self.metrics.queue_depth.dec()
        job.future.cancel()
        self.metrics.dropped.inc(len(job.sentences))
        return True

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken by the worker."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Requests the worker has taken and not answered yet."""
        return self._running

    def submit(self, name: str, sentences: list[str]) -> Job:
        """Queue one request for served config ``name``; raises QueueFull, ShuttingDown or WorkerDied at once."""
        job = Job(name, list(sentences))
        with self._cond:
            if self.error is not None:
                raise WorkerDied(self.error)
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are already waiting (--max-queue {self.max_queue})")
            self._queue.append(job)
            self.metrics.queue_depth.inc()
            self._cond.notify()
        return job

    def _take_round(self) -> list[Job] | None:
        """The jobs of the next round (None: stop). Waits up to max_wait for a fuller round."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = time.monotonic() + self.max_wait
            while sum(len(j.sentences) for j in self._queue) < self.max_round_sentences and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            jobs: list[Job] = []
            count = 0
            while self._queue and (not jobs or count + len(self._queue[0].sentences) <= self.max_round_sentences):
                job = self._queue.popleft()
                self.metrics.queue_depth.dec()
                # False: the client disconnected and its future was cancelled before its turn
                if job.future.set_running_or_notify_cancel():
                    jobs.append(job)
                    count += len(job.sentences)
                else:
                    self.metrics.dropped.inc(len(job.sentences))
            self._running = len(jobs)
            self.metrics.running.inc(len(jobs))
            self._round = jobs
            return jobs

    def _run(self) -> None:
        """The thread: the loop, and whatever ends it on an error fails every request at once."""
        try:
            self._loop()
        except BaseException as err:  # anything that escapes the loop: the worker is dead
            self.error = f"the model worker died: {type(err).__name__}: {err}"
            log.critical("%s", self.error, exc_info=err)
            self._fail_all(lambda: WorkerDied(self.error))
            if self.on_death is not None:
                try:
                    self.on_death(self)
                except Exception:
                    log.exception("the worker's on_death callback failed")
            return
        # stopped: whatever still waits is refused, never left hanging
        self._fail_all(lambda: ShuttingDown("the server is shutting down"))

    def _fail_all(self, error: Callable[[], Exception]) -> None:
        """Answer every job of the round in progress and of the queue with ``error()``."""
        with self._cond:
            jobs = [job for job in self._round if not job.future.done()]
            while self._queue:
                job = self._queue.popleft()
                self.metrics.queue_depth.dec()
                if job.future.set_running_or_notify_cancel():
                    jobs.append(job)
            self.metrics.running.dec(self._running)
            self._round, self._running = [], 0
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error())

    def _loop(self) -> None:
        while (jobs := self._take_round()) is not None:
            by_config: dict[str, list[Job]] = {}
            for job in jobs:
                by_config.setdefault(job.name, []).append(job)
            for name, group in by_config.items():
                self._run_group(name, group)
            with self._cond:
                self.metrics.running.dec(self._running)
                self._round, self._running = [], 0
            # the round's activations are freed: hand their pages back, or resident memory
            # ratchets up to the largest round seen (a few ms; see memory.py)
            release_free_memory()

    def _run_group(self, name: str, jobs: list[Job]) -> None:
        """One encode call for jobs of one config.

        A ValueError is the Encoder refusing some text: the merged call is retried job by job so
        one request's bad input never fails the others. Any other exception (out of memory, a
        device error) is the server's failure, not the input's: every job of the call fails with
        it (retrying them one by one would only repeat it), and the worker goes on with the next round.
        """
        encoder = self.encoders[name]
        sentences = [s for job in jobs for s in job.sentences]
        start = time.perf_counter()
        try:
            tokens = encoder.count_tokens(sentences)
            vectors = encoder.encode(sentences, show_progress_bar=False)
        except ValueError as err:  # the request's text
            if len(jobs) > 1:
                for job in jobs:
                    self._run_group(name, [job])
            else:
                jobs[0].future.set_exception(err)
            return
        except Exception as err:  # handed to the round's requests, never kills the worker
            log.error("encoding a round of %d requests (%d sentences) failed", len(jobs), len(sentences), exc_info=err)
            failure = EncodingFailed(f"{type(err).__name__}: {err}")
            for job in jobs:
                job.future.set_exception(failure)
            return
        self.metrics.encode_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_sentences.observe(len(sentences))
        self.metrics.batch_tokens.observe(sum(tokens))
        self.metrics.sentences.labels(name).inc(len(sentences))
        self.metrics.tokens.labels(name).inc(sum(tokens))
        offset = 0
        for job in jobs:
            n = len(job.sentences)
            job.future.set_result(Embeddings(vectors[offset : offset + n], sum(tokens[offset : offset + n])))
            offset += n
