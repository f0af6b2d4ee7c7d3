"""The Ray engine on multi-node clusters on loopback, losing nodes in the middle of a run.

Two kinds of cluster: Ray's own fault-injection tooling (``ray.cluster_utils.Cluster``: a head and
one-CPU worker nodes as separate raylets, the way Ray's test suite does it) and a cluster started
by ``ray start --head`` / ``ray start --address`` in other processes, joined by
``tpembed embed --engine ray --address``. Nodes are removed while shards are in flight (timed by
polling the output folder, with deadlines); the run must finish with every row exactly once and
the local engine's vectors. The tiny model keeps the actors' start short; the texts are long
enough that a shard takes a moment, so a node can be lost while it holds one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tpembed.corpus import embed_corpus

from .conftest import SENTENCES, assert_vectors_close, read_output

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
ROWS, PER_SHARD = 240, 20
SHARDS = ROWS // PER_SHARD
TINY = {"tp_exiting_index": 3}  # the tiny model has 4 decoder layers
# a lost node is declared dead after ~1 s instead of Ray's default (tens of seconds)
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                   "health_check_failure_threshold": 3}
DEADLINE_S = 240  # a loaded 2-core machine starts Ray actors slowly
# Every node binds to this loopback address. Not 127.0.0.1: Ray rewrites 127.0.0.1 / localhost in a
# cluster address to the machine's outward IP (services.resolve_ip_for_localhost), which would take
# the cluster off loopback (and fail, the services being bound to loopback).
NODE_IP = "127.0.0.2"
OBJECT_STORE = 100 * 1024 * 1024  # bytes per node (the default is a share of the machine's memory)


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as s:
            s.bind((NODE_IP, 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _loopback_alias_works(), reason=f"{NODE_IP} is not a loopback address here")


def long_texts(n: int) -> list[str]:
    """``n`` distinct texts of ~180 words: a 20-row shard takes a few tenths of a second on the tiny model."""
    return [f"({i}) " + " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(20)) for i in range(n)]


@pytest.fixture(scope="module")
def ray_tmpdir():
    """Ray's files (sessions, sockets, the current-cluster address file) in a short private folder."""
    folder = tempfile.mkdtemp(prefix="tpray", dir="/tmp")  # socket paths must stay short
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ["RAY_TMPDIR"] = folder
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_folder):
    """(input file, ids, vectors of the local engine) for the long texts."""
    folder = tmp_path_factory.mktemp("cluster-corpus")
    path = folder / "corpus.txt"
    path.write_text("".join(t + "\n" for t in long_texts(ROWS)), encoding="utf-8")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the actors (1 CPU each); the tiny model is also faster so on busy cores
    try:
        embed_corpus(path, folder / "local", model=str(tiny_folder), rows_per_shard=PER_SHARD, progress=False,
                     **TINY)
    finally:
        torch.set_num_threads(threads)
    ids, vectors = read_output(folder / "local")
    assert ids == [f"corpus.txt:{i + 1}" for i in range(ROWS)]
    return path, ids, vectors


def finished_shards(out: Path) -> list[str]:
    folder = out / "embeddings"
    return sorted(p.name for p in folder.glob("part-*.parquet")) if folder.is_dir() else []


def actor_pids() -> list[int]:
    """The processes of the ShardEmbedder actors (Ray titles them after the class)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("ShardEmbedder" in part for part in (proc.info["cmdline"] or [])):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def check_output(out: Path, corpus, result: dict | None = None) -> None:
    """Every row exactly once, in input order, with the local engine's vectors; nothing half written."""
    _, ids_local, vectors_local = corpus
    ids, vectors = read_output(out)
    assert ids == ids_local  # every row exactly once
    assert_vectors_close(vectors, vectors_local, rel=1e-5)  # same shards, same batches
    assert finished_shards(out) == [f"part-{i:06d}.parquet" for i in range(SHARDS)]
    assert not list((out / "embeddings").glob(".*")), "no temporary file left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_read"] == manifest["embedded"] == ROWS and manifest["engine"] == "ray"
    if result is not None:
        assert result["embedded"] == ROWS and result["model"]["num_layers"] == 4


def test_ray_data_restarts_lost_actors_and_retries_their_shards_by_default():
    """The engine passes no retry settings (deprecated as map_batches kwargs in Ray 2.60): it relies on
    Ray Data's actor-pool defaults. A Ray upgrade that changes them fails here, by name, before the
    node-loss tests below hang or fail."""
    from ray.data._internal.execution.operators.actor_pool_map_operator import (
        ActorPoolMapOperator,
    )
    from ray.data.context import DataContext

    args = ActorPoolMapOperator._apply_default_remote_args({"num_cpus": 1}, DataContext.get_current())
    assert args["max_restarts"] == -1 and args["max_task_retries"] == -1


# ----------------------------------------------------------------------------- ray.cluster_utils


@pytest.fixture
def three_node_cluster(ray_tmpdir):
    """A head with no CPU for actors and three one-CPU worker nodes; this process is the driver."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": NODE_IP, "include_dashboard": False, "_system_config": FAST_NODE_DEATH})
    try:
        nodes = [cluster.add_node(num_cpus=1, node_ip_address=NODE_IP, object_store_memory=OBJECT_STORE)
                 for _ in range(3)]
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_two_nodes_lost_mid_run_every_row_once_as_the_local_engine(tmp_path, corpus, tiny_folder,
                                                                    three_node_cluster):
    """Two actors on three nodes; the nodes of both actors are removed, one after the other, while
    shards are in flight. Ray restarts a lost actor where there is room and retries its shards; after
    the second loss there is room for one actor only, and the run goes on with it."""
    import psutil

    cluster, nodes = three_node_cluster
    out = tmp_path / "out"
    result: dict = {}

    def run() -> None:
        try:
            result.update(embed_corpus(corpus[0], out, model=str(tiny_folder), rows_per_shard=PER_SHARD,
                                       engine="ray", workers=2, progress=False, **TINY))
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            result["error"] = err

    raylets = {node.all_processes["raylet"][0].process.pid: node for node in nodes}

    def nodes_with_actors() -> list:
        found = []
        for pid in actor_pids():
            try:
                node = raylets.get(psutil.Process(pid).ppid())
            except psutil.Error:
                continue
            if node is not None and node in cluster.worker_nodes and node not in found:
                found.append(node)
        return found

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline, removed_at = time.time() + DEADLINE_S, []
    while worker.is_alive() and len(removed_at) < 2:
        assert time.time() < deadline, "no shard finished in time"
        done = len(finished_shards(out))
        holders = nodes_with_actors()
        if done >= (2, 5)[len(removed_at)] and holders:
            cluster.remove_node(holders[0], allow_graceful=False)  # kill its raylet, workers and all
            removed_at.append((done, len(finished_shards(out))))
        time.sleep(0.02)
    worker.join(max(1.0, deadline - time.time()))
    assert not worker.is_alive(), "the run did not finish after losing two nodes"
    assert len(removed_at) == 2, f"the run ended before two nodes were lost ({removed_at})"
    assert all(after < SHARDS for _, after in removed_at), f"a node was lost after the last shard: {removed_at}"
    assert "error" not in result, result.get("error")
    check_output(out, corpus, result)


# ----------------------------------------------------------------------------- ray start


def free_port() -> int:
    with socket.socket() as s:
        s.bind((NODE_IP, 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill one `ray start --block` node at once: its process group holds `ray start` and the raylet
    (whose workers die with it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def _kill_leftovers(marker: str) -> None:
    """Ray processes of this cluster that left their process group (their command line names our folder)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in (proc.info["cmdline"] or [])):
                proc.kill()
        except psutil.Error:
            continue


class RayStartCluster:
    """`ray start --head` and worker nodes, each `--block`ing in its own process group."""

    def __init__(self, temp_dir: str) -> None:
        self.temp_dir, self.port = temp_dir, free_port()
        self.address = f"{NODE_IP}:{self.port}"
        self.env = {**os.environ, "RAY_TMPDIR": temp_dir, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.head: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _start(self, args: list[str]) -> subprocess.Popen:
        ray_bin = Path(sys.executable).with_name("ray")
        command = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--block", "--node-ip-address", NODE_IP,
                   "--object-store-memory", str(OBJECT_STORE),
                   "--temp-dir", self.temp_dir, "--dashboard-agent-listen-port", str(free_port()),
                   "--disable-usage-stats", *args]
        log = Path(self.temp_dir) / f"ray-start-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as sink:
            return subprocess.Popen(command, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def log_tails(self) -> str:
        return "\n".join(f"{log.name}: ...{log.read_text(errors='replace')[-1500:]}"
                         for log in self.logs if log.exists())

    def start(self, worker_cpus: list[int]) -> None:
        """The head, then the worker nodes one by one, each waited for (a short-lived driver in this
        process watches the cluster's CPUs); a node that fails to start on a loaded machine is retried once."""
        self.head = self._start(["--head", "--port", str(self.port), "--num-cpus", "0", "--include-dashboard", "false",
                                 "--system-config", json.dumps(FAST_NODE_DEATH)])
        deadline = time.time() + 120
        while not _port_open(self.port):
            assert self.head.poll() is None, f"ray start --head exited: {self.log_tails()}"
            assert time.time() < deadline, "ray start --head did not open its port"
            time.sleep(0.1)
        ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
        try:
            for cpus in worker_cpus:
                for attempt in (1, 2):
                    node = self._start(["--address", self.address, "--num-cpus", str(cpus)])
                    deadline = time.time() + 120
                    have = ray.cluster_resources().get("CPU", 0)
                    while node.poll() is None and ray.cluster_resources().get("CPU", 0) < have + cpus:
                        assert time.time() < deadline, f"a worker node did not join: {self.log_tails()}"
                        time.sleep(0.1)
                    if node.poll() is None:
                        self.workers.append(node)
                        break
                    assert attempt == 1, f"a worker node failed to start twice: {self.log_tails()}"
        finally:
            ray.shutdown()

    def node_of(self, pid: int) -> subprocess.Popen | None:
        """The live worker node running process ``pid`` (Ray workers lead their own process group; the
        raylet that started them is in its node's group)."""
        import psutil

        groups = {w.pid: w for w in self.workers if w.poll() is None}
        try:
            proc = psutil.Process(pid)
            for ancestor in (proc, *proc.parents()):
                node = groups.get(os.getpgid(ancestor.pid))
                if node is not None:
                    return node
        except (psutil.Error, ProcessLookupError):
            pass
        return None

    def stop(self) -> None:
        for proc in [*self.workers, *([self.head] if self.head else [])]:
            _kill_group(proc)
        _kill_leftovers(self.temp_dir)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((NODE_IP, port)) == 0


@pytest.fixture
def ray_start_cluster(ray_tmpdir):
    """`ray start --head` (no CPU for actors) and two one-CPU worker nodes; always stopped, by process group."""
    cluster = RayStartCluster(tempfile.mkdtemp(prefix="n", dir=ray_tmpdir))
    try:
        cluster.start([1, 1])
        yield cluster
    finally:
        cluster.stop()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from tpembed.cli import app; app()", "embed", *map(str, args)]


def test_ray_start_cluster_joined_by_address_survives_losing_the_node_with_the_last_shard(
        tmp_path, corpus, tiny_folder, ray_start_cluster):
    """`tpembed embed --engine ray --address` on a `ray start` cluster: a pool that cannot fit is one
    error line; then one actor embeds the shards, and its node is killed (the whole node, SIGKILL)
    while it holds the last shard: the actor restarts on the other node and redoes that shard."""
    cluster = ray_start_cluster
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_TMPDIR": cluster.temp_dir, "RAY_AUTH_MODE": "disabled"}
    common = (corpus[0], "-o", out, "--model", tiny_folder, "--tp-exiting-index", "3", "--rows-per-shard",
              str(PER_SHARD), "--engine", "ray", "--address", cluster.address, "--quiet")

    too_big = subprocess.run(cli(*common, "--workers", "3"), env=env, capture_output=True, text=True, timeout=180,
                             check=False)
    assert too_big.returncode == 2, too_big.stderr
    errors = [line for line in too_big.stderr.splitlines() if line.startswith("error:")]
    assert errors == [("error: 3 Ray workers x 1 CPUs need 3 CPUs; the cluster has 2 "
                       "(lower --workers or --cpus-per-worker)")], too_big.stderr
    assert finished_shards(out) == []

    logs = {name: (tmp_path / f"embed.{name}").open("w") for name in ("stdout", "stderr")}
    proc = subprocess.Popen(cli(*common, "--workers", "1"), env=env, stdout=logs["stdout"], stderr=logs["stderr"])
    try:
        deadline, lost = time.time() + DEADLINE_S, None
        while proc.poll() is None and lost is None:
            assert time.time() < deadline, "no shard finished in time"
            done = finished_shards(out)
            if len(done) == SHARDS - 1:  # only the last shard is left: the one actor holds it
                nodes = [n for n in map(cluster.node_of, actor_pids()) if n is not None]
                if nodes:
                    os.killpg(nodes[0].pid, signal.SIGKILL)  # the node dies: `ray start`, raylet, actor
                    lost = (nodes[0], set(done), set(finished_shards(out)))
            time.sleep(0.01)
        proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for sink in logs.values():
            sink.close()
    stdout, stderr = ((tmp_path / f"embed.{name}").read_text() for name in ("stdout", "stderr"))
    assert lost is not None, "the run ended before the node was lost"
    node, before, after = lost
    assert after == before and len(after) == SHARDS - 1, "the last shard was written before its node died"
    assert node.wait(10) is not None
    assert proc.returncode == 0, stderr
    assert f"embedded {ROWS} of {ROWS} rows in {SHARDS} shards (0 from an earlier run)" in stdout, stdout
    check_output(out, corpus)
