"""Failures never hang: a failing round, a dead worker, a body far over the limit."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import httpx
import numpy as np
import torch
from conftest import assert_vectors_close

from .conftest import metric, running, wait_until

ERROR_KEYS = {"message", "type", "param", "code"}


def post(server, body, timeout: float = 30) -> httpx.Response:
    # a bounded timeout: a request that hangs fails the test (ReadTimeout) instead of hanging it
    return httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=timeout)


def _in_threads(server, bodies: dict[str, dict]) -> tuple[dict[str, threading.Thread], dict[str, httpx.Response]]:
    results: dict[str, httpx.Response] = {}
    threads = {k: threading.Thread(target=lambda k=k, b=b: results.setdefault(k, post(server, b))) for k, b in bodies.items()}
    return threads, results


def test_an_error_inside_one_round_fails_that_rounds_requests_with_a_500_and_the_next_round_serves(
    tiny_app_factory, tiny_reference
):
    with running(tiny_app_factory(max_wait_ms=0)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        encoder = worker.encoders["tiny"]
        real_encode = encoder.encode
        calls: list[list[str]] = []

        def encode_with_one_oom(sentences, **kwargs):  # the second round runs out of memory, once
            calls.append(list(sentences))
            if len(calls) == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return real_encode(sentences, **kwargs)

        encoder.encode = encode_with_one_oom
        threads, results = _in_threads(server, {
            "before": {"model": "tiny", "input": "a"},
            "oom1": {"model": "tiny", "input": ["the cat sat", "on the mat"]},
            "oom2": {"model": "tiny", "input": "a dog"},
        })
        with encoder.loaded.lock:  # the first round blocks on the model: the next two merge into one round
            threads["before"].start()
            wait_until(lambda: worker.running == 1, what="the first round to start")
            threads["oom1"].start()
            wait_until(lambda: worker.waiting == 1, what="the second request to queue")
            threads["oom2"].start()
            wait_until(lambda: worker.waiting == 2, what="the third request to queue")
        for t in threads.values():
            t.join(60)
            assert not t.is_alive(), "a request of the failing round hangs"
        assert calls[1] == ["the cat sat", "on the mat", "a dog"]  # the round that failed held both
        assert len(calls) == 2  # an out-of-memory round is not retried request by request
        assert results["before"].status_code == 200
        for key in ("oom1", "oom2"):
            response = results[key]
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert set(error) == ERROR_KEYS and error["type"] == "server_error" and error["code"] == "encoding_failed"
            assert "OutOfMemoryError" in error["message"], error
        # the worker lives on: the next round serves normally, and the server stays healthy
        after = post(server, {"model": "tiny", "input": ["the cat sat", "on the mat"]})
        assert after.status_code == 200
        assert_vectors_close(np.float32([d["embedding"] for d in after.json()["data"]]),
                             tiny_reference["tiny"].encode(["the cat sat", "on the mat"]), rel=1e-5)
        assert httpx.get(f"{server.url}/health").status_code == 200 and worker.alive
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "tpembed_requests_total", {"status": "500"}) == 2
        assert metric(text, "tpembed_queue_depth") == 0


class Fatal(BaseException):
    """Not an Exception: nothing in the worker's loop catches it (it stands for whatever kills the thread)."""


def test_a_dead_worker_turns_health_503_and_fails_waiting_and_new_requests_at_once(tiny_app_factory):
    died: list[BaseException] = []
    with running(tiny_app_factory(max_wait_ms=0, on_load_error=died.append)) as server:
        server.wait_loaded()
        worker = server.served.workers["tiny"]
        encoder = worker.encoders["tiny"]

        def fatal_encode(sentences, **kwargs):
            raise Fatal("the device is gone")

        encoder.encode = fatal_encode
        threads, results = _in_threads(server, {
            "running": {"model": "tiny", "input": "a"},
            "queued": {"model": "tiny", "input": ["b", "c"]},
            "queued-tp": {"model": "tiny-tp", "input": "d"},
        })
        with encoder.loaded.lock:
            threads["running"].start()
            wait_until(lambda: worker.running == 1, what="the first round to start")
            threads["queued"].start()
            threads["queued-tp"].start()
            wait_until(lambda: worker.waiting == 2, what="two requests to queue")
        start = time.monotonic()
        for t in threads.values():
            t.join(30)
            assert not t.is_alive(), "a request hangs on a dead worker"
        assert time.monotonic() - start < 10
        for key, response in results.items():  # the round in progress and the queue: all answered, 503
            assert response.status_code == 503, (key, response.text)
            error = response.json()["error"]
            assert set(error) == ERROR_KEYS and error["code"] == "worker_died" and "Fatal" in error["message"]
        assert not worker.alive and worker.waiting == 0
        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        error = health.json()["error"]
        assert error["code"] == "worker_died" and "Fatal: the device is gone" in error["message"], error
        # a new request is refused at once, for either config of the dead worker's model
        for name in ("tiny", "tiny-tp"):
            refused = post(server, {"model": name, "input": "e"}, timeout=10)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "worker_died"
        assert len(died) == 1 and "Fatal" in str(died[0])  # what makes `tpembed serve` exit non-zero
        assert metric(httpx.get(f"{server.url}/metrics").text, "tpembed_queue_depth") == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """The peak resident memory of this process (the server runs in it) while the block runs, sampled."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


MB = 2**20


def test_a_100_mb_body_is_refused_with_413_without_being_read(tiny_app_factory):
    import json

    limit = 4 * MB
    with running(tiny_app_factory(max_body_bytes=limit)) as server:
        server.wait_loaded()
        host, port = server.url.removeprefix("http://").split(":")
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        # a Content-Length of 100 MB, and not one byte of the body: refused from the header alone
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"{head}Content-Length: {100 * MB}\r\n\r\n".encode())
            status, body = _read_response(sock)  # a server that waits for the body times out here
        error = json.loads(body)["error"]
        assert status == 413 and set(error) == ERROR_KEYS and error["code"] == "request_too_large", body
        # chunked (no Content-Length): 100 MB offered, read only up to the limit, never held in memory
        chunk = b"x" * (256 * 1024)
        sent = 0
        with _PeakRss() as rss, socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            while sent < 100 * MB:
                readable, writable, _ = select.select([sock], [sock], [], 10)
                if readable:  # the server answered: stop sending
                    break
                assert writable, "the server neither reads nor answers"
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:  # it closed the connection after answering
                    break
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
            status, body = _read_response(sock)
        print(f"sent {sent / MB:.1f} MB before the answer; the server's memory grew by {rss.growth / MB:.1f} MB")
        assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large", body
        assert sent < 100 * MB // 2, f"{sent / MB:.0f} MB sent before the answer: the server read far past the limit"
        assert rss.growth < 50 * MB, f"the server's memory grew by {rss.growth / MB:.0f} MB for a refused body"
        # the server goes on: a body within the limit is served
        assert post(server, {"model": "tiny", "input": "a" * 1000}).status_code == 200
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "tpembed_requests_total", {"status": "413"}) == 2
