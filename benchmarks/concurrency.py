"""Thread safety at what cost: one thread's throughput, and several threads sharing one model.

    python benchmarks/concurrency.py --model smollm2-135m --limit 256 --repeats 5 --threads 1 2 4

Single thread: encodes the first --limit distinct STS-B dev sentences with the TP preset, --repeats
times, and prints the median sentences/s (run it on two checkouts, e.g. with PYTHONPATH, to compare
library versions: it uses only the public API). Several threads: a vanilla and a TP Encoder share
one loaded model; each thread encodes the same sentences with one of them; every thread's vectors
are compared with that encoder's solo result and the wall time gives the total sentences/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

from tpembed import Encoder, load_model
from tpembed.evaluation import task_sentences

DATA = Path(__file__).resolve().parents[2] / "shared" / "senteval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=256, help="distinct STS-B dev sentences")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="*", default=[1], help="thread counts to run")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    sentences = task_sentences(["STSBenchmark-dev"], args.data)[: args.limit]
    loaded = load_model(args.model, device="cpu")
    tp = Encoder(loaded, use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, output_layer=28, batch_size=32)
    vanilla = Encoder(loaded, use_which_plan="vanilla", output_layer=-1, batch_size=32)
    solo = {"tp": tp.encode(sentences), "vanilla": vanilla.encode(sentences)}  # also the warm-up
    report: dict = {"model": args.model, "sentences": len(sentences), "torch_threads": torch.get_num_threads()}

    times, cpu_times = [], []  # CPU time too: it barely moves when other work shares the cores
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        tp.encode(sentences)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    report["single_thread_sentences_per_s"] = len(sentences) / statistics.median(times)
    report["single_thread_cpu_ms_per_sentence"] = 1000 * min(cpu_times) / len(sentences)
    print(f"1 thread, TP preset: {report['single_thread_sentences_per_s']:.1f} sentences/s "
          f"(median of {args.repeats}; {len(sentences)} sentences, torch threads {torch.get_num_threads()}); "
          f"CPU {report['single_thread_cpu_ms_per_sentence']:.2f} ms/sentence (min)")

    for n_threads in [n for n in args.threads if n > 1]:
        results: list[tuple[str, np.ndarray]] = []
        errors: list[str] = []
        guard = threading.Lock()
        barrier = threading.Barrier(n_threads)

        def work(i: int) -> None:
            name, encoder = ("tp", tp) if i % 2 else ("vanilla", vanilla)
            barrier.wait()
            try:
                vectors = encoder.encode(sentences)
            except Exception as err:  # a failed thread is a finding, not a benchmark crash
                with guard:
                    errors.append(f"{type(err).__name__}: {err}")
                return
            with guard:
                results.append((name, vectors))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        worst = max((float(np.max(np.abs(v - solo[name]) / (np.abs(solo[name]) + 1e-3)))
                     for name, v in results), default=float("nan"))
        rate = len(results) * len(sentences) / wall
        report[f"threads_{n_threads}"] = {"sentences_per_s": rate, "max_rel_diff_to_solo": worst,
                                          "failed_threads": errors}
        print(f"{n_threads} threads (vanilla + TP on one model): {rate:.1f} sentences/s in total; "
              f"max relative difference to the solo vectors {worst:.2e}; "
              f"{len(errors)} of {n_threads} threads failed {sorted(set(errors))}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
