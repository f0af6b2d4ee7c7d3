"""Soak and abuse test of ``tpembed serve`` (issue 28, item 3): a long run under load, plus abuse.

    OMP_NUM_THREADS=1 python benchmarks/soak.py smollm2-135m --minutes 20 --clients 64 --out soak.json

(smoke test: ``python benchmarks/soak.py --minutes 0.5 --clients 8 --warmup-seconds 10``)

``tpembed serve CONFIG`` (default ``smollm2-135m``, the packaged vanilla config) runs as a
subprocess on a free loopback port. ``--clients`` threads (each its own httpx connection) send
/v1/embeddings requests of 1-8 sentences (seeded; drawn from STS-B dev and STS12-16 as in
serve_load.py) for ``--minutes``, recording (time, latency, status) of each. Meanwhile:

- the server's resident memory (RSS, psutil, with its child processes) is sampled every
  ``--rss-every`` seconds; growth = (max RSS after warm-up - max RSS during warm-up) / the latter:
  peak against peak, since RSS swings within each round by the round's activations (comparing one
  sample taken between rounds with a later peak measures a round's working set, not growth). The
  per-minute minimum (RSS between rounds) is reported too: a leak would raise it;
- every minute, ``--slow-clients`` raw sockets send a valid ~300-byte request body byte by byte
  (1 byte / ``--slow-byte-ms``, correct Content-Length); the normal clients' latency for requests
  started inside those windows is compared with the rest;
- once, after warm-up: a request announcing a 100 MiB body (Content-Length) whose body is streamed
  until the server answers or closes; it must get 413, and the RSS delta is reported;
- every minute, ``--disconnects`` raw sockets each send a full request and close before the answer;
  after the run, once idle, /metrics must show ``tpembed_queue_depth`` and
  ``tpembed_running_requests`` at 0 (``tpembed_dropped_sentences`` is reported).

Prints a per-minute markdown table and a summary; ``--out`` writes everything as JSON. Exits 1
if a normal request failed, RSS grew more than ``--max-rss-growth`` %, the 100 MiB body was not
refused with 413, or the queue was not empty at the end. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from tpembed.evaluation import task_sentences

DATA = Path(__file__).resolve().parents[2] / "shared" / "senteval"
POOL_TASKS = ["STSBenchmark-dev", "STS12", "STS13", "STS14", "STS15", "STS16"]
HOST = "127.0.0.1"
BIG_BODY = 100 * 2**20


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def request_bytes(port: int, body: bytes, length: int | None = None) -> tuple[bytes, bytes]:
    """Raw HTTP/1.1 request: (head, body)."""
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n").encode()
    return head, body


def read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status code of the answer on ``sock`` (None: closed or timed out without one)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


class Server:
    """``tpembed serve`` in a subprocess; RSS sampling of it and its children."""

    def __init__(self, config: str, port: int, extra: list[str]) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="soak-server-", suffix=".log", delete=False)  # noqa: SIM115 (closed in stop)
        cmd = ["tpembed", "serve", config, "--host", HOST, "--port", str(port), *extra]
        print("$ " + " ".join(cmd) + f"   (log: {self.log.name})", flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"server not healthy after {timeout} s; see {self.log.name}")

    def rss_mb(self) -> float:
        total = 0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line.startswith(("tpembed_queue_depth", "tpembed_running_requests", "tpembed_dropped_sentences_total")):
                name, value = line.rsplit(" ", 1)
                out[name] = out.get(name, 0.0) + float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="smollm2-135m", help="named config to serve")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup-seconds", type=float, default=120.0)
    parser.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="percent allowed after warm-up")
    parser.add_argument("--slow-clients", type=int, default=4)
    parser.add_argument("--slow-byte-ms", type=float, default=20.0)
    parser.add_argument("--disconnects", type=int, default=16, help="requests abandoned per minute")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pool-tasks", nargs="+", default=POOL_TASKS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-args", default="", help="extra options for tpembed serve (one string)")
    parser.add_argument("--out", type=Path, default=None, help="write everything as JSON")
    args = parser.parse_args()

    pool = task_sentences(args.pool_tasks, args.data)
    duration = args.minutes * 60
    warmup = min(args.warmup_seconds, duration / 3)
    period = min(60.0, duration / 2)  # slow bursts and disconnects: every minute (twice in a short run)
    print(f"{args.config}: {args.clients} clients for {args.minutes} min, warm-up {warmup:.0f} s, "
          f"pool {len(pool)} sentences", flush=True)

    server = Server(args.config, free_port(), args.server_args.split())
    records: list[tuple[float, float, int, int]] = []  # (start offset s, latency s, status, client)
    rss: list[tuple[float, float]] = []  # (offset s, MB)
    slow_windows: list[tuple[float, float]] = []
    slow_statuses: list[int | None] = []
    disconnect_log: list[dict] = []
    big: dict = {}
    guard = threading.Lock()
    stop = threading.Event()
    try:
        server.wait_healthy(600)
        t0 = time.monotonic()
        end = t0 + duration

        def body_for(rng: random.Random) -> dict:
            return {"model": args.config, "input": rng.sample(pool, rng.randint(1, 8)), "encoding_format": "base64"}

        def client(i: int) -> None:
            rng = random.Random(args.seed * 1000 + i)
            with httpx.Client(timeout=300) as http:
                while time.monotonic() < end:
                    start = time.monotonic()
                    try:
                        status = http.post(f"{server.url}/v1/embeddings", json=body_for(rng)).status_code
                    except httpx.HTTPError:
                        status = -1  # transport error: lost
                    with guard:
                        records.append((start - t0, time.monotonic() - start, status, i))

        def sample_rss() -> None:
            while not stop.is_set():
                with guard:
                    rss.append((time.monotonic() - t0, server.rss_mb()))
                stop.wait(args.rss_every)

        def slow_one(rng: random.Random, statuses: list, sent_at: list) -> None:
            sentences = []  # a valid body of about 300 bytes
            while len(json.dumps({"model": args.config, "input": sentences})) < 250:
                sentences.append(rng.choice(pool)[:120])
            head, body = request_bytes(server.port, json.dumps({"model": args.config, "input": sentences}).encode())
            try:
                with socket.create_connection((HOST, server.port), timeout=60) as sock:
                    sock.sendall(head)
                    for b in body:
                        sock.sendall(bytes([b]))
                        time.sleep(args.slow_byte_ms / 1000)
                    sent_at.append(time.monotonic() - t0)  # the window: while the bodies trickle in
                    statuses.append(read_status(sock, 120))
            except OSError:
                statuses.append(None)

        def slow_burst(n: int) -> None:
            rng = random.Random(args.seed + 7 + n)
            statuses: list = []
            sent_at: list = []
            start = time.monotonic() - t0
            threads = [threading.Thread(target=slow_one, args=(rng, statuses, sent_at))
                       for _ in range(args.slow_clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with guard:
                slow_windows.append((start, max(sent_at, default=time.monotonic() - t0)))
                slow_statuses.extend(statuses)

        def disconnect_burst(n: int) -> None:
            rng = random.Random(args.seed + 99 + n)
            socks = []
            for _ in range(args.disconnects):
                body = json.dumps({"model": args.config, "input": rng.sample(pool, 8)}).encode()
                head, body = request_bytes(server.port, body)
                try:
                    sock = socket.create_connection((HOST, server.port), timeout=10)
                    sock.sendall(head + body)
                    socks.append(sock)
                except OSError:
                    pass
            time.sleep(0.05)  # queued behind the load, not answered yet
            for sock in socks:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()  # RST: the client is gone
            disconnect_log.append({"at_s": time.monotonic() - t0, "sent": len(socks)})

        def big_body() -> None:
            before = server.rss_mb()
            peak, sent, status = before, 0, None
            started = time.monotonic()
            head, _ = request_bytes(server.port, b"", length=BIG_BODY)
            chunk = b"x" * 2**16
            try:
                with socket.create_connection((HOST, server.port), timeout=30) as sock:
                    sock.sendall(head)
                    while sent < BIG_BODY and time.monotonic() - started < 120:
                        if select.select([sock], [], [], 0)[0]:
                            break  # the server answered (or closed) before the whole body
                        try:
                            sock.sendall(chunk)
                        except OSError:
                            break
                        sent += len(chunk)
                        if sent % (8 * 2**20) == 0:
                            peak = max(peak, server.rss_mb())
                    status = read_status(sock, 30)
            except OSError as e:
                big["error"] = repr(e)
            time.sleep(1)
            after = server.rss_mb()
            big.update({"status": status, "body_bytes_sent": sent, "rss_before_mb": before,
                        "rss_peak_mb": max(peak, after), "rss_after_mb": after,
                        "rss_delta_mb": max(peak, after) - before, "seconds": time.monotonic() - started})

        def abuse() -> None:
            n = 0
            next_at = t0 + period / 2
            big_done = False
            while not stop.is_set():
                now = time.monotonic()
                if not big_done and now >= t0 + warmup + 1:
                    big_body()
                    big_done = True
                    continue
                if now >= next_at and now + 10 < end:  # a burst ends before the run does
                    disconnect_burst(n)
                    slow_burst(n)
                    n += 1
                    next_at += period
                stop.wait(0.2)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        abuser = threading.Thread(target=abuse, daemon=True)
        abuser.start()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in clients:
            t.start()
        last_print = t0
        while any(t.is_alive() for t in clients):
            time.sleep(1)
            if time.monotonic() - last_print >= 60:
                last_print = time.monotonic()
                with guard:
                    done = len(records)
                print(f"  {(last_print - t0) / 60:5.1f} min: {done} requests, RSS {server.rss_mb():.0f} MB",
                      flush=True)
        for t in clients:
            t.join()
        stop.set()
        abuser.join(timeout=180)
        sampler.join(timeout=10)

        # idle: the queue must drain to 0
        deadline = time.monotonic() + 60
        while True:
            metrics = server.metrics()
            idle = (metrics.get("tpembed_queue_depth", -1) == 0 and metrics.get("tpembed_running_requests", -1) == 0)
            if idle or time.monotonic() > deadline:
                break
            time.sleep(1)
        final_rss = server.rss_mb()
    finally:
        stop.set()
        server.stop()

    # per-minute table
    rows = []
    n_minutes = max(1, int(-(-duration // 60)))
    for m in range(n_minutes):
        rec = [r for r in records if m * 60 <= r[0] < (m + 1) * 60]
        lat = [r[1] * 1000 for r in rec if r[2] == 200]
        errors: dict[str, int] = {}
        for r in rec:
            if r[2] != 200:
                errors[str(r[2])] = errors.get(str(r[2]), 0) + 1
        mem = [v for t, v in rss if m * 60 <= t < (m + 1) * 60]
        rows.append({"minute": m + 1, "requests": len(rec), "errors": errors, "p50_ms": pct(lat, .5),
                     "p95_ms": pct(lat, .95), "p99_ms": pct(lat, .99), "rss_mb": max(mem) if mem else float("nan"),
                     "rss_min_mb": min(mem) if mem else float("nan")})
    print("\n| minute | requests | errors | p50 ms | p95 ms | p99 ms | RSS MB (min) | RSS MB (max) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        print(f"| {r['minute']} | {r['requests']} | {errs} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['rss_min_mb']:.0f} | {r['rss_mb']:.0f} |")

    # summary
    failed = sum(1 for r in records if r[2] != 200)
    warm = [v for t, v in rss if t <= warmup]
    after = [v for t, v in rss if t > warmup] + [final_rss]
    rss_warm = max(warm) if warm else rss[0][1]  # the warm-up's peak: a round's working set included
    rss_warm_last = warm[-1] if warm else rss[0][1]
    growth = 100 * (max(after) - rss_warm) / rss_warm

    def in_slow(t: float) -> bool:
        return any(a <= t <= b for a, b in slow_windows)

    steady = [r for r in records if r[0] > warmup and r[2] == 200]
    lat_slow = [r[1] * 1000 for r in steady if in_slow(r[0])]
    lat_norm = [r[1] * 1000 for r in steady if not in_slow(r[0])]
    queue_ok = metrics.get("tpembed_queue_depth") == 0 and metrics.get("tpembed_running_requests") == 0
    big_ok = big.get("status") == 413
    total = len(records)
    wall = duration
    summary = {
        "requests": total, "requests_per_s": total / wall, "non_200": failed,
        "rss_max_during_warmup_mb": rss_warm, "rss_last_warmup_sample_mb": rss_warm_last,
        "rss_max_after_warmup_mb": max(after), "rss_min_after_warmup_mb": min(after), "rss_last_mb": final_rss,
        "rss_growth_pct": growth,
        "slow_windows": len(slow_windows), "slow_client_statuses": slow_statuses,
        "latency_in_slow_windows_ms": {"n": len(lat_slow), "p50": pct(lat_slow, .5), "p95": pct(lat_slow, .95)},
        "latency_outside_ms": {"n": len(lat_norm), "p50": pct(lat_norm, .5), "p95": pct(lat_norm, .95)},
        "big_body": big, "disconnect_bursts": disconnect_log, "metrics_after": metrics,
    }
    print(f"\n{total} requests ({total / wall:.1f}/s) from {args.clients} clients in {args.minutes} min; "
          f"non-200: {failed}")
    print(f"RSS: max {rss_warm:.0f} MB during warm-up ({warmup:.0f} s; last sample {rss_warm_last:.0f} MB), "
          f"after it max {max(after):.0f} MB, min {min(after):.0f} MB, last {final_rss:.0f} MB: "
          f"peak growth {growth:+.1f} % (limit {args.max_rss_growth} %)")
    print(f"slow clients ({args.slow_clients} x {len(slow_windows)} windows, statuses {slow_statuses}): "
          f"others' p50/p95 {summary['latency_in_slow_windows_ms']['p50']:.0f}/"
          f"{summary['latency_in_slow_windows_ms']['p95']:.0f} ms during (n={len(lat_slow)}) vs "
          f"{summary['latency_outside_ms']['p50']:.0f}/{summary['latency_outside_ms']['p95']:.0f} ms outside "
          f"(n={len(lat_norm)})")
    print(f"100 MiB body: status {big.get('status')} after {big.get('body_bytes_sent', 0) / 2**20:.1f} MiB sent, "
          f"RSS delta {big.get('rss_delta_mb', float('nan')):+.1f} MB")
    print(f"disconnects: {sum(d['sent'] for d in disconnect_log)} requests abandoned in {len(disconnect_log)} bursts; "
          f"after the run: " + ", ".join(f"{k} {v:g}" for k, v in metrics.items()))

    problems = []
    if failed:
        problems.append(f"{failed} normal requests failed")
    if growth > args.max_rss_growth:
        problems.append(f"RSS grew {growth:.1f} %")
    if not big_ok:
        problems.append(f"100 MiB body got {big.get('status')}, not 413")
    if not queue_ok:
        problems.append("queue not empty after the run")
    summary["problems"] = problems
    if args.out:
        args.out.write_text(json.dumps({"config": args.config, "args": {k: str(v) for k, v in vars(args).items()},
                                        "warmup_s": warmup, "per_minute": rows, "summary": summary,
                                        "rss_samples": rss, "records": records}, indent=1))
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
