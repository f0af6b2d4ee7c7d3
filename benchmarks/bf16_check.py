"""bf16 vs fp32 encoding time on this machine, and the smallest cosine between the two.

Backs the bf16 figures in BENCHMARKS.md (transfer section):
    OMP_NUM_THREADS=1 python benchmarks/bf16_check.py
"""

from __future__ import annotations

import time

import numpy as np

from tpembed import Encoder, load_model
from tpembed.evaluation import task_sentences
from tpembed.evaluation.pipeline import default_data_dir


def main() -> None:
    sentences = task_sentences(["MR"], default_data_dir())[:192]
    vectors = {}
    for dtype in ("float32", "bfloat16"):
        encoder = Encoder(load_model("smollm2-135m", dtype=dtype), prompt_method="prompteol",
                          use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, output_layer=28)
        encoder.encode(sentences[:32], show_progress_bar=False)  # warm-up
        start = time.perf_counter()
        v = np.asarray(encoder.encode(sentences, show_progress_bar=False), dtype=np.float32)
        print(f"{dtype}: {time.perf_counter() - start:.1f} s for {len(sentences)} sentences")
        vectors[dtype] = v / np.linalg.norm(v, axis=1, keepdims=True)
    print(f"smallest cosine fp32 vs bf16: {(vectors['float32'] * vectors['bfloat16']).sum(axis=1).min():.5f}")


if __name__ == "__main__":
    main()
