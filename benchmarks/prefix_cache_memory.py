"""Peak memory of one encode call with the prefix cache on and off, against the batch size.

    OMP_NUM_THREADS=1 python benchmarks/prefix_cache_memory.py

256 random STS sentences (seeded), vanilla PromptEOL on the packaged SmolLM2 in fp32, one torch
thread; per point the peak RSS above the RSS before the call (VmHWM reset; Linux). Run it on a
commit before 295f650 to see the cache holding every layer's keys/values of the batch.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import PeakMemory

from tpembed import Encoder, load_model
from tpembed.evaluation import task_sentences


def main() -> None:
    torch.set_num_threads(1)
    pool = task_sentences(["STSBenchmark-dev", "STS12", "STS13"], os.environ.get("TPEMBED_DATA"))
    sentences = random.Random(0).sample(pool, 256)
    loaded = load_model("smollm2-135m", device="cpu", dtype="float32")
    print("| prefix cache | batch size | peak above the RSS before the call, MiB |\n|---|---:|---:|")
    for label, settings in (("on", {}), ("off", {"prefix_cache": False})):
        encoder = Encoder(loaded, config="smollm2-135m", **settings)
        encoder.encode(pool[:32], show_progress_bar=False)  # warm-up
        for batch_size in (1, 16, 64):
            with PeakMemory(torch.device("cpu")) as mem:
                encoder.encode(sentences, batch_size=batch_size, show_progress_bar=False)
            print(f"| {label} | {batch_size} | {(mem.peak - mem.before) / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
