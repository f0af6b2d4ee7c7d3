"""How encoding cost grows with input length and batch size (issue 27, item 3).

    python benchmarks/scaling.py --threads 2 --out results/scaling.json

Inputs are passages of exactly ``L`` tokens (``--lengths``, default 16 64 256 1024 4096), cut from
STS-B dev sentences joined together, so they are real text, not repeated tokens; the prompt adds
its own ~12 tokens. For each length, ``--token-budget`` tokens' worth of passages (at least
``--min-passages``) are encoded once after a warm-up, with the config's batching
(``--batch-size`` rows, ``--max-batch-tokens``). Then, at ``--batch-length`` tokens, the batch
size is varied (``--batch-sizes``) with and without ``--max-batch-tokens``.

Each point reports sentences/s, prompt tokens/s, wall ms per passage and the peak resident memory
above the loaded model (VmHWM reset before the point; Linux) — the memory that grows with the
batch: activations, attention scores, padding. Tokens/s falling with length is what attention's
quadratic term costs; memory above ``rows x length x hidden x layers`` means a step holds more than
the forward needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import PeakMemory

from tpembed import Encoder
from tpembed.evaluation.data import load_task


def passages(encoder: Encoder, text_pool: list[str], length: int, count: int) -> list[str]:
    """``count`` passages of exactly ``length`` tokens (the model's tokenizer), from a rotating text pool."""
    tok = encoder.loaded.tokenizer
    ids = tok(" ".join(text_pool), add_special_tokens=False)["input_ids"]
    out = []
    start = 0
    for _ in range(count):
        if start + length > len(ids):
            start = 0
        chunk = ids[start : start + length]
        text = tok.decode(chunk)
        # decode/encode can merge or split at the cut: trim until it is exactly `length` tokens
        while len(tok(text, add_special_tokens=False)["input_ids"]) > length:
            text = text[:-1]
        out.append(text)
        start += length
    return out


def point(base: Encoder, texts: list[str], batch_size: int, max_batch_tokens: int | None) -> dict:
    encoder = Encoder(base.loaded, config=base.config, max_batch_tokens=max_batch_tokens)  # same loaded model
    tokens = sum(encoder.count_tokens(texts))
    encoder.encode(texts[: min(len(texts), batch_size)], batch_size=batch_size, show_progress_bar=False)  # warm-up
    with PeakMemory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size, show_progress_bar=False)
        wall = time.perf_counter() - start
    return {"passages": len(texts), "prompt_tokens": tokens, "wall_s": wall, "sentences_per_s": len(texts) / wall,
            "tokens_per_s": tokens / wall, "ms_per_passage": 1000 * wall / len(texts),
            "peak_above_model_mib": (mem.peak - mem.before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--data", default=os.environ.get("TPEMBED_DATA"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    parser.add_argument("--token-budget", type=int, default=16384, help="passage tokens per length point")
    parser.add_argument("--min-passages", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="for the length points")
    parser.add_argument("--batch-length", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--batch-cap", type=int, default=4096, help="max_batch_tokens for the capped batch points")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    encoder = Encoder(args.config, dtype=args.dtype, device="cpu")
    dev = load_task("STSBenchmark-dev", args.data).subsets["dev"]
    pool = list(dict.fromkeys(list(dev.sent1) + list(dev.sent2)))
    hidden, layers = encoder.embedding_dim, encoder.loaded.num_layers
    print(f"{args.config} {args.dtype}, {args.threads} threads, hidden {hidden}, {layers} layers", flush=True)

    lengths = []
    print("\n| passage tokens | passages | sentences/s | prompt tokens/s | ms / passage | peak above model MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        texts = passages(encoder, pool, length, max(args.min_passages, args.token_budget // length))
        row = {"length": length, **point(encoder, texts, args.batch_size, args.max_batch_tokens)}
        lengths.append(row)
        print(f"| {length} | {row['passages']} | {row['sentences_per_s']:.1f} | {row['tokens_per_s']:.0f} | "
              f"{row['ms_per_passage']:.0f} | {row['peak_above_model_mib']:.0f} |", flush=True)

    batches = []
    texts = passages(encoder, pool, args.batch_length, max(args.batch_sizes) * 4)
    print(f"\n| batch size ({args.batch_length}-token passages) | max_batch_tokens | sentences/s | peak above model MiB |")
    print("|---:|---:|---:|---:|")
    for cap in (None, args.batch_cap):
        for size in args.batch_sizes:
            row = {"batch_size": size, "max_batch_tokens": cap, "length": args.batch_length,
                   **point(encoder, texts, size, cap)}
            batches.append(row)
            print(f"| {size} | {cap or '-'} | {row['sentences_per_s']:.1f} | {row['peak_above_model_mib']:.0f} |",
                  flush=True)

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"config": args.config, "dtype": args.dtype, "threads": args.threads,
                                        "machine": platform.platform(), "lengths": lengths, "batches": batches},
                                       indent=1))


if __name__ == "__main__":
    main()
