"""Grouped-query attention in torch's SDPA kernel on a CPU: what transformers' switch saves, and whether it moves a vector.

    python benchmarks/sdpa_gqa.py --threads 2 --out results/sdpa_gqa.json

SmolLM2 has 9 query heads and 3 key/value heads. With an attention mask (padding, or the prefix
cache's prefix + suffix) transformers copies every key/value head 3 times (``repeat_kv``) before
calling SDPA, because on CUDA SDPA's grouped-query path with a mask falls back to the slow math
kernel. torch's CPU kernel takes the grouped heads as they are (``enable_gqa=True``), and
``TRANSFORMERS_SDPA_FORCE_GQA=1`` makes transformers pass them so. This times each config with the
switch off and on, interleaved in one process on the same loaded model (the variable is read at
every attention call), on the first ``--limit`` distinct STS-B dev sentences, in one call each;
median over ``--repeats`` rounds, ratios taken within a round, and the largest difference between
the two modes' vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from _dev_sentences import add_common_options, dev_sentences

from tpembed import Encoder, load_model
from tpembed.config import resolve_config

SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["smollm2-135m", "smollm2-135m-best-r3", "smollm2-135m-best"],
                        help="named configs of one model; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=5)
    add_common_options(parser, limit=192)
    args = parser.parse_args()
    sentences = dev_sentences(args)
    loaded = load_model(resolve_config(args.configs[0]).model, device="cpu", dtype="float32")
    encoders = {name: Encoder(loaded, config=name) for name in args.configs}
    for encoder in encoders.values():  # warm-up, and the prefix states kept
        encoder.encode(sentences[:8], show_progress_bar=False)
    seconds: dict[tuple[str, str], list[float]] = {}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for repeat in range(args.repeats):
        for switch in ("0", "1") if repeat % 2 == 0 else ("1", "0"):
            os.environ[SWITCH] = switch
            for name, encoder in encoders.items():
                t0 = time.perf_counter()
                vectors[(name, switch)] = encoder.encode(sentences, show_progress_bar=False)
                seconds.setdefault((name, switch), []).append(time.perf_counter() - t0)
    os.environ.pop(SWITCH)

    base = args.configs[0]
    rows = []
    print(f"{len(sentences)} sentences, one call, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"| config | sentences/s, {SWITCH}=0 | =1 | speed-up | vs `{base}`, =0 | vs `{base}`, =1 | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.configs:
        off, on = seconds[(name, "0")], seconds[(name, "1")]
        row = {
            "config": name,
            "sentences_per_s_off": len(sentences) / statistics.median(off),
            "sentences_per_s_on": len(sentences) / statistics.median(on),
            "speedup": statistics.median([a / b for a, b in zip(off, on, strict=True)]),
            "vs_base_off": statistics.median([a / b for a, b in zip(off, seconds[(base, "0")], strict=True)]),
            "vs_base_on": statistics.median([a / b for a, b in zip(on, seconds[(base, "1")], strict=True)]),
            "max_abs_diff": float(np.abs(vectors[(name, "0")] - vectors[(name, "1")]).max()),
            "seconds_off": off, "seconds_on": on,
        }
        rows.append(row)
        print(f"| `{name}` | {row['sentences_per_s_off']:.1f} | {row['sentences_per_s_on']:.1f} | {row['speedup']:.2f}x "
              f"| {row['vs_base_off']:.2f}x | {row['vs_base_on']:.2f}x | {row['max_abs_diff']:.1e} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"sentences": len(sentences), "repeats": args.repeats, "threads": torch.get_num_threads(),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
