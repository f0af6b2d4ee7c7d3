"""What a named recipe costs against vanilla PromptEOL, by call size, with prefix states kept or not.

    python benchmarks/recipe_cost.py --threads 2 --out results/recipe_cost.json

A call is one ``Encoder.encode``: ``tpembed run`` and ``tpembed embed`` make few large ones, while a
server round or a sentence-transformers batch is a call of a few sentences. Every call needs the
prompt's shared opening (its keys/values: the prefix cache); a k-shot recipe's opening is about a
hundred tokens, so how often it is computed matters for small calls. Two modes, on the same loaded
model, same sentences:

* ``kept``: the prefix states are kept across calls while the weights are unchanged (the default);
* ``per call``: the kept states are dropped before each call, so each call computes its openings
  again (tpembed's behaviour before they were kept).

For each model, its configs (default: SmolLM2's vanilla, ``-best-r3`` and ``-best``; Gemma's vanilla
and ``-best``) encode the first ``--limit`` distinct STS-B dev sentences in calls of each
``--call-sizes``, every (config, call size, mode) once per round, over ``--repeats`` rounds. A
model's configs run back to back for each (call size, mode), their order rotating each round, and the
ratio to the model's vanilla config is taken within each round (median and range over rounds);
``max abs diff`` (kept against per call) checks that keeping the states changes no vector.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from _dev_sentences import add_common_options, dev_sentences

from tpembed import Encoder, load_model
from tpembed.config import resolve_config
from tpembed.levers.prefix_cache import PrefixCache, weights_stamp

DEFAULT_CONFIGS = ["smollm2-135m", "smollm2-135m-best-r3", "smollm2-135m-best", "gemma3-270m", "gemma3-270m-best"]
MODES = ("kept", "per call")


def encode_in_calls(encoder: Encoder, sentences: Sequence[str], call_size: int, keep: bool) -> np.ndarray:
    """Encode ``sentences`` in calls of ``call_size``; without ``keep``, drop the kept prefix states first."""
    prefix_levers = [lever for lever in encoder.levers if isinstance(lever, PrefixCache)]
    parts = []
    for start in range(0, len(sentences), call_size):
        if not keep:
            for lever in prefix_levers:
                lever.states.clear()
        parts.append(encoder.encode(list(sentences[start:start + call_size]), show_progress_bar=False))
    return np.concatenate(parts)


def stamp_ms(model: torch.nn.Module, calls: int = 100) -> float:
    """Median milliseconds of the weights check a kept prefix state costs each call."""
    skip = model.get_input_embeddings().weight
    times = []
    with torch.inference_mode():  # as in encode
        for _ in range(calls):
            t0 = time.perf_counter()
            weights_stamp(model, skip)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def time_model(configs: list[str], sentences: list[str], call_sizes: list[int], repeats: int) -> list[dict]:
    """Rows for the configs of one model (the first config is the vanilla baseline)."""
    loaded = load_model(resolve_config(configs[0]).model, device="cpu", dtype="float32")
    print(f"{loaded.model.config.model_type}: the weights check takes {stamp_ms(loaded.model):.2f} ms a call "
          f"({sum(1 for _ in loaded.model.parameters())} parameters)")
    encoders = {name: Encoder(loaded, config=name) for name in configs}
    cases = [(name, size, mode) for name in configs for size in call_sizes for mode in MODES]
    seconds: dict[tuple, list[float]] = {case: [] for case in cases}
    vectors: dict[tuple, np.ndarray] = {}
    for name in configs:  # warm-up: first-call allocations out of the timings
        encoders[name].encode(sentences[:8], show_progress_bar=False)
    # the cases compared with each other run next to each other, so a ratio is taken within a round
    # of seconds rather than across the whole run: this VM's speed drifts by 10-30% over minutes
    groups = [(size, mode) for size in call_sizes for mode in MODES]
    for repeat in range(repeats):
        for size, mode in groups:
            shift = repeat % len(configs)
            for name in configs[shift:] + configs[:shift]:
                t0 = time.perf_counter()
                vectors[(name, size, mode)] = encode_in_calls(encoders[name], sentences, size, keep=mode == "kept")
                seconds[(name, size, mode)].append(time.perf_counter() - t0)
    rows = []
    for name, size, mode in cases:
        mine, base = seconds[(name, size, mode)], seconds[(configs[0], size, mode)]
        ratios = [a / b for a, b in zip(mine, base, strict=True)]
        rows.append({
            "config": name, "call_size": size, "mode": mode, "seconds": statistics.median(mine),
            "sentences_per_s": len(sentences) / statistics.median(mine),
            "vs_vanilla": statistics.median(ratios), "vs_vanilla_range": [min(ratios), max(ratios)],
            "repeats": mine,
            "max_abs_kept_vs_per_call": float(np.abs(vectors[(name, size, "kept")] - vectors[(name, size, "per call")]).max()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS,
                        help="named configs; each model's first one is its baseline (vanilla)")
    parser.add_argument("--call-sizes", type=int, nargs="+", default=[8, 32, 192])
    parser.add_argument("--repeats", type=int, default=5)
    add_common_options(parser, limit=192)
    args = parser.parse_args()
    sentences = dev_sentences(args)
    by_model: dict[str, list[str]] = {}
    for name in args.configs:
        by_model.setdefault(resolve_config(name).model, []).append(name)
    rows = []
    for model, configs in by_model.items():
        rows += [{"model": model, **row} for row in time_model(configs, sentences, args.call_sizes, args.repeats)]

    print(f"{len(sentences)} sentences, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print("| config | call size | sentences/s kept | vs vanilla kept (range) | sentences/s per call "
          "| vs vanilla per call (range) | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    index = {(r["config"], r["call_size"], r["mode"]): r for r in rows}

    def ratio(row: dict) -> str:
        low, high = row["vs_vanilla_range"]
        return f"{row['vs_vanilla']:.2f}x ({low:.2f}-{high:.2f})"

    for name in args.configs:
        for size in args.call_sizes:
            kept, per_call = index[(name, size, "kept")], index[(name, size, "per call")]
            print(f"| `{name}` | {size} | {kept['sentences_per_s']:.1f} | {ratio(kept)} "
                  f"| {per_call['sentences_per_s']:.1f} | {ratio(per_call)} | {kept['max_abs_kept_vs_per_call']:.1e} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"sentences": len(sentences), "repeats": args.repeats, "threads": torch.get_num_threads(),
                       "machine": platform.processor() or platform.machine(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
