"""``tpembed serve``: fast errors before loading, a real process that serves and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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
