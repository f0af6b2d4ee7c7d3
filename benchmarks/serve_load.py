"""Load test of the embeddings server: throughput and latency against direct Encoder calls.

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py --requests 48 --clients 1 8 32 --rounds 2 --torch-threads 1

Requests of 1-32 distinct sentences (seeded; drawn from STS-B dev and STS12-16, ~26,000 distinct
sentences, so the default 1,000 requests fit; timing only, no score is computed) are sent by N
concurrent clients (threads with their own httpx connection, base64 as the openai client asks)
to a uvicorn server on loopback in this process, serving one config (default: the TP preset ``smollm2-135m-tp``).
Every answer is checked against the offline vectors (relative 1e-4): lost, mismatched and 5xx
answers are counted. Baselines on the same loaded model, in the same run:

- offline: one ``Encoder.encode`` call on all the sentences (length-sorted batches: the best case);
- direct: one ``Encoder.encode`` call per request, one after another (a library user's loop);
- server with batching off (``--unbatched-clients``): one request per encode call, no waiting.

Rounds interleave the settings, so a busy neighbour on a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn

from tpembed import Encoder, load_model
from tpembed.config import default_config_path, resolve_run_config
from tpembed.evaluation import task_sentences
from tpembed.serving import create_app

DATA = Path(__file__).resolve().parents[2] / "shared" / "senteval"
# the first runs drew from STS-B dev alone (2,909 sentences: --pool-tasks STSBenchmark-dev), too few for 1,000 requests
POOL_TASKS = ["STSBenchmark-dev", "STS12", "STS13", "STS14", "STS15", "STS16"]


def make_requests(sentences: list[str], n: int, seed: int) -> list[list[str]]:
    """n requests of 1-32 sentences, drawn without replacement (so no answer comes from a dedupe)."""
    rng = random.Random(seed)
    pool = list(sentences)
    rng.shuffle(pool)
    out, start = [], 0
    for _ in range(n):
        size = rng.randint(1, 32)
        if start + size > len(pool):
            raise SystemExit(f"{n} requests need more than the {len(pool)} distinct sentences; lower --requests")
        out.append(pool[start : start + size])
        start += size
    return out


def _close(got: np.ndarray, expected: np.ndarray, rtol: float) -> bool:
    """Every row within relative ``rtol`` of its expected vector (in norm: other batch neighbours only
    change float rounding, and SmolLM2's few huge activations make per-element tolerances meaningless)."""
    error = np.linalg.norm(got - expected, axis=-1)
    return bool(np.all(error <= rtol * np.linalg.norm(expected, axis=-1)))


class Served:
    """A server on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        assert app.state.served.wait_loaded(300), app.state.served.error

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


def load_run(url: str, name: str, requests: list[list[str]], expected: list[np.ndarray], clients: int,
             rtol: float) -> dict:
    """Send every request from ``clients`` threads; time, latencies and how many answers were wrong."""
    latencies: list[float] = []
    counts = {"5xx": 0, "other_errors": 0, "mismatched": 0, "lost": 0}
    guard = threading.Lock()
    order = iter(range(len(requests)))

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with guard:
                    i = next(order, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    response = http.post(f"{url}/v1/embeddings",
                                         json={"model": name, "input": requests[i], "encoding_format": "base64"})
                except httpx.TransportError:
                    with guard:
                        counts["lost"] += 1
                    continue
                elapsed = time.perf_counter() - start
                with guard:
                    latencies.append(elapsed)
                    if response.status_code >= 500:
                        counts["5xx"] += 1
                        continue
                    if response.status_code != 200:
                        counts["other_errors"] += 1
                        continue
                data = response.json()["data"]
                got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])
                ok = got.shape == expected[i].shape and _close(got, expected[i], rtol)
                if not ok:
                    with guard:
                        counts["mismatched"] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    n_sentences = sum(len(r) for r in requests)
    lat = sorted(latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    return {"wall_s": wall, "sentences_per_s": n_sentences / wall, "p50_s": pct(0.50), "p95_s": pct(0.95),
            "p99_s": pct(0.99), "answered": len(lat), **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-135m-tp", help="named config to serve")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--pool-tasks", nargs="+", default=POOL_TASKS,
                        help="tasks whose sentences the requests are drawn from")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--unbatched-clients", type=int, nargs="*", default=[32], help="batching off at these")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-round-sentences", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16, float16 or auto")
    parser.add_argument("--rtol", type=float, default=None,
                        help="answer vs offline vector, relative in norm (default 1e-4 in fp32, else 5e-2)")
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args()

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    config = resolve_run_config(default_config_path(), args.config,
                                {"device": args.device, "dtype": args.dtype}).encoder_config()
    pool = task_sentences(args.pool_tasks, args.data)
    requests = make_requests(pool, args.requests, args.seed)
    flat = [s for r in requests for s in r]
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    encoder = Encoder(loaded, config=config)
    # bf16/fp16: batch neighbours change the rounding far more than in fp32
    rtol = args.rtol if args.rtol is not None else (1e-4 if loaded.model.dtype == torch.float32 else 5e-2)
    offline = encoder.encode(flat, show_progress_bar=False)  # also the warm-up
    expected, offset = [], 0
    for r in requests:
        expected.append(offline[offset : offset + len(r)])
        offset += len(r)
    print(f"{args.config}: {len(requests)} requests, {len(flat)} distinct sentences; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    def app(batched: bool):
        # batching off: one request per encode call (a round holds one request) and no waiting
        options = {"max_round_sentences": args.max_round_sentences, "max_wait_ms": args.max_wait_ms} if batched else {
            "max_round_sentences": 1, "max_wait_ms": 0}
        return create_app({args.config: config}, loader=lambda c: loaded, max_queue=len(requests) + 1, **options)

    results: dict[str, list[dict]] = {}

    def record(key: str, figures: dict) -> None:
        results.setdefault(key, []).append(figures)
        extra = "".join(f", {k} {figures[k]}" for k in ("5xx", "mismatched", "lost", "other_errors") if k in figures)
        p = f", p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s" if "p50_s" in figures else ""
        print(f"  {key:<22} {figures['sentences_per_s']:7.1f} sentences/s{p}{extra}", flush=True)

    for round_ in range(args.rounds):
        print(f"round {round_ + 1}", flush=True)
        start = time.perf_counter()
        encoder.encode(flat, show_progress_bar=False)
        record("offline", {"sentences_per_s": len(flat) / (time.perf_counter() - start)})
        latencies = []
        start = time.perf_counter()
        for r in requests:
            t = time.perf_counter()
            encoder.encode(r, show_progress_bar=False)
            latencies.append(time.perf_counter() - t)
        lat = sorted(latencies)
        record("direct (per request)", {"sentences_per_s": len(flat) / (time.perf_counter() - start),
                                        "p50_s": lat[len(lat) // 2], "p95_s": lat[int(0.95 * len(lat))]})
        for batched, levels in ((True, args.clients), (False, args.unbatched_clients)):
            served = Served(app(batched))
            try:
                for clients in levels:
                    key = f"server {'batched' if batched else 'unbatched'} x{clients}"
                    record(key, load_run(served.url, args.config, requests, expected, clients, rtol))
            finally:
                served.stop()

    offline = statistics.median(r["sentences_per_s"] for r in results["offline"])
    print("\nmedian over rounds (ratio to offline one-call Encoder.encode):")
    for key, runs in results.items():
        rate = statistics.median(r["sentences_per_s"] for r in runs)
        p = ""
        if "p50_s" in runs[0]:
            p = (f", p50 {statistics.median(r['p50_s'] for r in runs):.2f} s, "
                 f"p95 {statistics.median(r['p95_s'] for r in runs):.2f} s")
        bad = sum(r.get("5xx", 0) + r.get("mismatched", 0) + r.get("lost", 0) for r in runs)
        print(f"  {key:<22} {rate:7.1f} sentences/s  x{rate / offline:.2f}{p}"
              + (f", 5xx+mismatched+lost {bad}" if "5xx" in runs[0] else ""))
    if args.out:
        args.out.write_text(json.dumps({"config": args.config, "device": str(loaded.device),
                                        "dtype": str(loaded.model.dtype), "rtol": rtol, "requests": len(requests), "sentences": len(flat),
                                        "torch_threads": torch.get_num_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
