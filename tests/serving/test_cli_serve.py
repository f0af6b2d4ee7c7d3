"""``tpembed serve``: fast errors before loading, a real process that serves and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import make_model, make_tokenizer
from typer.testing import CliRunner

from tpembed.cli import app


@pytest.mark.parametrize(
    "args, words",
    [
        (["serve", "no-such-config"], "config 'no-such-config' not found"),
        (["serve", "smollm2-135m", "smollm2-135m"], "named twice"),
        (["serve", "smollm2-135m-tp", "--tp-exiting-index", "99"], "beyond smollm2-135m's 30 decoder layers"),
        (["serve", "--model", "smollm2-135m", "--use-which-plan", "sometimes"], "use_which_plan"),
    ],
)
def test_bad_configs_fail_in_one_line_before_any_model_loads(args, words):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_process_answers_with_its_key_and_exits_0_on_sigterm(tmp_path):
    model_dir = tmp_path / "tiny"
    make_model("llama").save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    port = _free_port()
    env = {**os.environ, "TPEMBED_API_KEY": "k3y", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-c", "from tpembed.cli import app; app()", "serve", "--model", str(model_dir),
               "--device", "cpu", "--tp-starting-index", "1", "--tp-exiting-index", "3", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the server did not become healthy"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        body = {"model": str(model_dir), "input": ["hello there", "a cat"]}
        assert httpx.post(f"{url}/v1/embeddings", json=body).status_code == 401  # the key came from the env
        ok = httpx.post(f"{url}/v1/embeddings", json=body, headers={"Authorization": "Bearer k3y"})
        assert ok.status_code == 200 and len(ok.json()["data"]) == 2
        listed = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k3y"}).json()["data"]
        assert [m["id"] for m in listed] == [str(model_dir)]  # a --model without a NAME is served under the model
        assert len(listed[0]["identity"]) == 12  # the identity digest of a model loaded from a folder
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "API key required" in output


def test_a_model_that_fails_to_load_stops_the_server_with_a_one_line_error(tmp_path):
    model_dir = tmp_path / "no-weights"
    make_model("llama").config.save_pretrained(model_dir)  # a config (the fast checks pass) but no weights
    make_tokenizer().save_pretrained(model_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-c", "from tpembed.cli import app; app()", "serve", "--model", str(model_dir),
               "--device", "cpu", "--use-which-plan", "vanilla", "--port", str(_free_port())]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error: loading failed:" in result.stderr and "Traceback" not in result.stderr, result.stderr


def _tiny_model_dir(tmp_path):
    model_dir = tmp_path / "tiny"
    make_model("llama").save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    return model_dir


def _serve(model_dir, port: int, preamble: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``tpembed serve`` on the tiny model folder in a process of its own, ``preamble`` run first
    (it patches the Encoder the way a fault would: the server's own code is what runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    env.pop("TPEMBED_API_KEY", None)
    code = f"{preamble}\nfrom tpembed.cli import app; app()"
    command = [sys.executable, "-c", code, "serve", "--model", str(model_dir), "--device", "cpu",
               "--use-which-plan", "vanilla", "--port", str(port), "--max-wait-ms", "0", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the server did not become healthy"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.kill()
    return process.communicate()[0]


FATAL_ON_DIE = """
import tpembed.encoder as _e
class Fatal(BaseException):
    pass
_encode = _e.Encoder.encode
def _fatal_encode(self, sentences, **kwargs):
    if any("die" in s for s in sentences):
        raise Fatal("the device is gone")
    return _encode(self, sentences, **kwargs)
_e.Encoder.encode = _fatal_encode
"""


def test_a_dead_worker_fails_its_requests_at_once_and_the_process_exits_non_zero(tmp_path):
    model_dir = _tiny_model_dir(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(model_dir, port, FATAL_ON_DIE)
    try:
        _wait_healthy(process, url)
        assert httpx.post(f"{url}/v1/embeddings", json={"model": str(model_dir), "input": "fine"}).status_code == 200
        dying = httpx.post(f"{url}/v1/embeddings", json={"model": str(model_dir), "input": "die now"}, timeout=30)
        assert dying.status_code == 503 and dying.json()["error"]["code"] == "worker_died", dying.text
        start = time.monotonic()
        returncode = process.wait(timeout=60)  # a supervisor sees it exit, and restarts it
        assert time.monotonic() - start < 30
    finally:
        output = _stop(process)
    assert returncode == 2, output
    assert "error: the model worker died: Fatal: the device is gone" in output, output


# every encode call waits for a file to appear (bounded): the test holds requests in flight with it
GATED = """
import os, time
import tpembed.encoder as _e
_encode = _e.Encoder.encode
def _gated_encode(self, sentences, **kwargs):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.environ["TPEMBED_TEST_GATE"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _encode(self, sentences, **kwargs)
_e.Encoder.encode = _gated_encode
"""


def _in_flight(url: str) -> tuple[float, float]:
    """(requests running on the worker, requests waiting for it), from /metrics."""
    from .conftest import metric

    text = httpx.get(f"{url}/metrics").text
    return metric(text, "tpembed_running_requests"), metric(text, "tpembed_queue_depth")


def _accepts(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_sigterm_under_load_finishes_the_requests_in_flight_and_exits_0(tmp_path):
    from .conftest import wait_until

    model_dir = _tiny_model_dir(tmp_path)
    gate = tmp_path / "gate"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(model_dir, port, GATED, env={"TPEMBED_TEST_GATE": str(gate)})
    lines: list[str] = []
    draining = threading.Event()

    def read_output() -> None:
        for line in process.stdout:
            lines.append(line)
            if "Waiting for connections to close" in line:  # uvicorn's graceful shutdown has begun
                draining.set()

    reader = threading.Thread(target=read_output)
    reader.start()
    results: dict[int, httpx.Response] = {}
    clients = 6
    try:
        _wait_healthy(process, url)
        threads = [
            threading.Thread(target=lambda i=i: results.setdefault(i, httpx.post(
                f"{url}/v1/embeddings", json={"model": str(model_dir), "input": [f"sentence {i}"] * (i + 1)},
                timeout=60)))
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        # one round is held in encode (the gate), the others wait in the queue
        wait_until(lambda: sum(_in_flight(url)) == clients, what="every request in flight")
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: not _accepts(url), what="the server to stop accepting")
        assert draining.wait(30) and process.poll() is None  # draining: the requests in flight are kept
        # they stay in flight well into the drain (a deliberate hold, not a wait for anything): a server
        # that cut them short (no graceful wait, a tiny timeout) would answer them 500 or drop them
        time.sleep(1.0)
        gate.touch()
        start = time.monotonic()
        returncode = process.wait(timeout=60)
        assert time.monotonic() - start < 30
        for t in threads:
            t.join(30)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        reader.join(30)
    output = "".join(lines)
    assert returncode == 0, output
    for i in range(clients):  # every request in flight at SIGTERM was answered in full
        assert results[i].status_code == 200, results[i].text
        assert len(results[i].json()["data"]) == i + 1


def test_sigterm_with_a_round_that_never_ends_exits_within_the_shutdown_timeout(tmp_path):
    model_dir = _tiny_model_dir(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # the gate never opens: the round in progress outlives the graceful shutdown
    process = _serve(model_dir, port, GATED, "--shutdown-timeout", "2", env={"TPEMBED_TEST_GATE": str(tmp_path / "never")})
    stuck: dict[str, object] = {}

    def client() -> None:
        try:
            stuck["response"] = httpx.post(f"{url}/v1/embeddings", json={"model": str(model_dir), "input": "x"},
                                           timeout=60)
        except httpx.TransportError as err:
            stuck["response"] = err

    try:
        _wait_healthy(process, url)
        thread = threading.Thread(target=client)
        thread.start()
        from .conftest import wait_until

        wait_until(lambda: _in_flight(url) == (1, 0), what="the request to reach the worker")
        process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        process.wait(timeout=60)
        elapsed = time.monotonic() - start
        thread.join(30)
    finally:
        output = _stop(process)
    # 2 s for the requests in flight, 2 s more for the worker's round: bounded, whatever the model does
    assert elapsed < 15, (elapsed, output)
    assert not isinstance(stuck["response"], httpx.Response) or stuck["response"].status_code >= 500
