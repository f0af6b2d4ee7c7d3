"""`tpembed embed` throughput (local vs Ray Data) and the driver's peak memory against the input size.

    python benchmarks/embed_corpus.py speed --rows 2000 --repeats 2
    python benchmarks/embed_corpus.py memory --rows 20000 200000

speed: the first --rows distinct SentEval STS sentences (STS12-16, STS-B) as a .txt file, embedded
with smollm2-135m by (--engines): the local engine with 2 torch threads; Ray with 2 actors x 1
thread; Ray with 1 actor x 2 threads; each run in its own process, the engines interleaved per repeat (the machine
may be shared). Per run it prints the end-to-end wall time (model load, Ray start) and the steady
rate: rows per second between the first and the last finished shard, timed from outside by
watching the output folder.

memory: short lines ("line 17 of the corpus") through the local engine with a tiny random Llama
(the model is not what is measured: the driver's data path is); prints the process's peak RSS per
input size. Flat means the input is streamed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "senteval"
STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark"]

ENGINES = {
    "local-2threads": {"engine": "local", "threads": 2},
    "ray-2actors-x1": {"engine": "ray", "workers": 2, "cpus_per_worker": 1.0, "threads": 1},
    "ray-1actor-x2": {"engine": "ray", "workers": 1, "cpus_per_worker": 2.0, "threads": 2},
}

# One run in a fresh process: embed, then print the manifest's counts, the peak RSS and the wall time.
_CHILD = """
import json, resource, sys, time
import psutil, torch
from tpembed import embed_corpus
args = json.loads(sys.argv[1])
torch.set_num_threads(args.pop("threads"))
start = time.perf_counter()
result = embed_corpus(args.pop("input"), args.pop("output"), progress=False, **args)
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "embedded": result["embedded"], "rejected": result["rejected"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "end_rss_mib": psutil.Process().memory_info().rss / 2**20}))
"""


def run_child(args: dict, watch: Path | None = None) -> dict:
    """Run one embedding in a child process; with ``watch``, time the shards as they appear there."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_AUTH_MODE": "disabled",
           "OMP_NUM_THREADS": str(args["threads"])}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    while proc.poll() is None:
        if watch is not None and watch.exists():
            for path in watch.glob("*.parquet"):
                seen.setdefault(path.name, time.perf_counter())
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if len(seen) >= 3:
        times = sorted(seen.values())
        rows_per_shard = args["rows_per_shard"]
        result["steady_rows_per_s"] = (len(times) - 1) * rows_per_shard / (times[-1] - times[0])
    return result


def speed(args: argparse.Namespace) -> None:
    from tpembed.evaluation import task_sentences

    texts = task_sentences(STS, args.data)[: args.rows]
    engines = {name: ENGINES[name] for name in args.engines}
    results: dict[str, list[dict]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "sts.txt"
        corpus.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        for repeat in range(args.repeats):
            for name, engine in engines.items():
                out = Path(tmp) / f"out-{repeat}-{name}"
                run = {"input": str(corpus), "output": str(out), "model": args.model,
                       "rows_per_shard": args.rows_per_shard, **engine}
                result = run_child(run, watch=out / "embeddings")
                results[name].append(result)
                print(f"repeat {repeat}  {name:18s} wall {result['wall']:6.1f} s  "
                      f"end-to-end {result['embedded'] / result['wall']:6.1f} rows/s  "
                      f"steady {result.get('steady_rows_per_s', float('nan')):6.1f} rows/s", flush=True)
    print(f"\n{len(texts)} sentences, {args.model}, {args.rows_per_shard} rows per shard, median of {args.repeats}:")
    base = statistics.median(r["steady_rows_per_s"] for r in results[args.engines[0]])
    for name, runs in results.items():
        steady = statistics.median(r["steady_rows_per_s"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        print(f"  {name:18s} steady {steady:6.1f} rows/s ({steady / base:.2f}x {args.engines[0]})  wall {wall:6.1f} s")
    if args.out:
        args.out.write_text(json.dumps({"rows": len(texts), "model": args.model, "rows_per_shard": args.rows_per_shard,
                                        "results": results}, indent=1))


def tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama with smollm2's tokenizer, saved as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tpembed import load_model

    tokenizer = load_model("smollm2-135m").tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny")
        for rows in args.rows:
            corpus = Path(tmp) / f"lines-{rows}.txt"
            corpus.write_text("".join(f"line {i} of the corpus\n" for i in range(rows)))
            run = {"input": str(corpus), "output": str(Path(tmp) / f"out-{rows}"), "model": str(model),
                   "tp_exiting_index": 2, "rows_per_shard": args.rows_per_shard, "batch_size": 256, "threads": 2}
            result = run_child(run)
            print(f"{rows:>8d} lines ({corpus.stat().st_size / 2**20:5.1f} MiB): peak RSS "
                  f"{result['peak_rss_mib']:7.1f} MiB (at the end {result['end_rss_mib']:7.1f} MiB), wall {result['wall']:6.1f} s, {result['embedded']} embedded",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p_speed = sub.add_parser("speed", help="rows/s: local vs Ray")
    p_speed.add_argument("--rows", type=int, default=2000)
    p_speed.add_argument("--repeats", type=int, default=2)
    p_speed.add_argument("--rows-per-shard", type=int, default=100)
    p_speed.add_argument("--model", default="smollm2-135m")
    p_speed.add_argument("--data", type=Path, default=DATA)
    p_speed.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES),
                         help="engines to run, in this order; ratios are to the first")
    p_speed.add_argument("--out", type=Path, help="write every run's figures here as JSON")
    p_memory = sub.add_parser("memory", help="driver peak RSS per input size")
    p_memory.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    p_memory.add_argument("--rows-per-shard", type=int, default=10_000)
    args = parser.parse_args()
    speed(args) if args.what == "speed" else memory(args)


if __name__ == "__main__":
    main()
