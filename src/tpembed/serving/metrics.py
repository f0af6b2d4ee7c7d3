"""Prometheus metrics of one server, in its own registry (so a process may hold several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """Counters and histograms the server and its workers update; :meth:`render` is ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tpembed_requests", "Embedding requests answered, by HTTP status", ["status"], registry=r
        )
        self.sentences = Counter("tpembed_sentences", "Sentences embedded", ["model"], registry=r)
        self.tokens = Counter("tpembed_tokens", "Prompt tokens encoded (prompt included)", ["model"], registry=r)
        self.dropped = Counter(
            "tpembed_dropped_sentences", "Sentences dropped because their client disconnected first", registry=r
        )
        self.batch_sentences = Histogram(
            "tpembed_batch_sentences", "Sentences per worker round (merged requests)", buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "tpembed_batch_tokens", "Prompt tokens per worker round", buckets=tuple(b * 32 for b in _BATCH_BUCKETS),
            registry=r,
        )
        self.queue_depth = Gauge("tpembed_queue_depth", "Requests waiting for a model worker", registry=r)
        self.running = Gauge(
            "tpembed_running_requests", "Requests a model worker has taken and not answered yet", registry=r
        )
        self.latency = Histogram(
            "tpembed_request_latency_seconds", "Time to answer an embedding request", buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "tpembed_encode_seconds", "Time of one worker round on the model", buckets=_LATENCY_BUCKETS, registry=r
        )

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
