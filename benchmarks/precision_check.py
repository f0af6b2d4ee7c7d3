"""Which lower precision pays on this CPU, at what quality? fp32 against bf16, bf16 autocast and int8.

    python benchmarks/precision_check.py --threads 2 --out results/precision_check.json

Variants of each config (default: the vanilla and the best recipe of SmolLM2), on the same model:

* ``fp32``: the default on a CPU;
* ``bf16``: the model in bf16 (``dtype="bfloat16"``): every activation is rounded to bf16;
* ``bf16 autocast``: fp32 weights, ``torch.autocast("cpu", bfloat16)`` around ``encode``: matmuls
  in bf16, the residual stream, norms and softmax in fp32 (what "keep the sensitive part in fp32"
  gives at most);
* ``int8 dynamic``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (int8 weights,
  activations quantized per batch): the modules tpembed's hooks do not touch (TP and early exit hook
  decoder layers; CP and the attention sum read layer and attention outputs), so the levers keep
  working.

Each variant encodes the full STS-B dev set (Spearman x100; cosine of each sentence's vector to
fp32's) and is timed on the first ``--speed-limit`` dev sentences, variants interleaved over
``--repeats`` rounds (median). A precision ships by default only if it is faster at equal quality.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import dev_pairs, normalized, spearman_x100

from tpembed import Encoder, load_model
from tpembed.models import LoadedModel


def quantized(loaded: LoadedModel) -> LoadedModel:
    """A copy of ``loaded`` whose decoder Linear layers are dynamic int8 (the lm_head is never run)."""
    clone = copy.copy(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (torchao is its successor)
        clone.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(loaded.model), {torch.nn.Linear},
                                                             dtype=torch.qint8)
    return clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["smollm2-135m", "smollm2-135m-best"])
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-limit", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s1, s2, gold = dev_pairs(args.data)
    dev = list(dict.fromkeys(s1 + s2))
    timed = dev[: args.speed_limit]

    results = {}
    for name in args.configs:
        fp32_model = load_model(Encoder(name, device="cpu", dtype="float32").config.model, device="cpu", dtype="float32")
        fp32 = Encoder(fp32_model, config=name, device="cpu", dtype="float32")
        bf16 = Encoder(name, device="cpu", dtype="bfloat16")
        int8 = Encoder(quantized(fp32_model), config=name, device="cpu", dtype="float32")

        def plain(encoder: Encoder):
            return lambda sentences: encoder.encode(sentences, show_progress_bar=False)

        def autocast(encoder: Encoder):
            def encode(sentences: list[str]) -> np.ndarray:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return encoder.encode(sentences, show_progress_bar=False)
            return encode

        variants = {"fp32": plain(fp32), "bf16": plain(bf16), "bf16 autocast": autocast(fp32),
                    "int8 dynamic": plain(int8)}
        reference = variants["fp32"](dev)
        rows = {}
        for label, enc in variants.items():
            vectors = reference if label == "fp32" else enc(dev)
            cos = (normalized(vectors) * normalized(reference)).sum(axis=1)
            rows[label] = {"stsb_dev": spearman_x100(dict(zip(dev, vectors)), s1, s2, gold),
                           "cosine_to_fp32_mean": float(cos.mean()), "cosine_to_fp32_min": float(cos.min()), "wall": []}
        labels = list(variants)
        for r in range(args.repeats):
            for label in labels[r % len(labels):] + labels[: r % len(labels)]:
                start = time.perf_counter()
                variants[label](timed)
                rows[label]["wall"].append(time.perf_counter() - start)
        for label in labels:
            rows[label]["sentences_per_s"] = len(timed) / statistics.median(rows[label]["wall"])
        results[name] = rows
        print(f"\n{name} ({len(timed)} sentences timed, {args.repeats} interleaved rounds, {args.threads} threads)")
        print("| variant | sentences/s | STS-B dev | cosine to fp32 (mean / min) |\n|---|---:|---:|---|")
        for label, row in rows.items():
            print(f"| {label} | {row['sentences_per_s']:.1f} | {row['stsb_dev']:.2f} | "
                  f"{row['cosine_to_fp32_mean']:.4f} / {row['cosine_to_fp32_min']:.4f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
