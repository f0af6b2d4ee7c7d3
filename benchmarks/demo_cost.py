"""What demonstrations cost per sentence: 0 to 8 shots, with the prefix cache on and off, and an ensemble.

A demonstration is text before every prompt, the same for every sentence, so with the prefix cache
(the default) its keys/values are computed once (and kept across calls, so the timed repeats reuse
them) and each sentence pays only for attending to the longer prefix; ``recipe_cost.py`` times the
per-call cost of computing them. This times, on the same sentences and the same loaded model, interleaved
(the starting variant rotates each repeat), vanilla PromptEOL with k = 0, 1, 2, 4 and 8 shots
(the first k built-in demonstrations), each with the prefix cache on and off, and a 3-member
demonstration ensemble (one pass per member). Reports the median seconds and the ratio to 0 shots.

    OMP_NUM_THREADS=2 python benchmarks/demo_cost.py --limit 256 --repeats 3 --out results/demo_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _dev_sentences import add_common_options, dev_sentences

from tpembed import Encoder, load_model
from tpembed.prompts import DEMONSTRATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    add_common_options(parser, limit=256)
    args = parser.parse_args()
    sentences = dev_sentences(args)
    loaded = load_model(args.model, device="cpu", dtype="float32")
    names = list(DEMONSTRATIONS)
    variants: dict[str, Encoder] = {}
    for shots in (0, 1, 2, 4, 8):
        demo = None if shots == 0 else names[:shots]
        for cache in (True, False):
            variants[f"{shots}-shot, prefix cache {'on' if cache else 'off'}"] = Encoder(
                loaded, use_which_plan="vanilla", prompt_method="prompteol", output_layer=-1,
                demonstration=demo, prefix_cache=cache)
    variants["ensemble of 3 one-shot members, cache on"] = Encoder(
        loaded, use_which_plan="vanilla", prompt_method="prompteol", output_layer=-1, demo_ensemble=names[:3])
    prompt_tokens = {k: sum(e.count_tokens(sentences)) / len(sentences) for k, e in variants.items()}

    times: dict[str, list[float]] = {k: [] for k in variants}
    keys = list(variants)
    for repeat in range(args.repeats):
        order = keys[repeat % len(keys):] + keys[: repeat % len(keys)]
        for key in order:
            t0 = time.perf_counter()
            variants[key].encode(sentences, show_progress_bar=False)
            times[key].append(time.perf_counter() - t0)
    base = statistics.median(times["0-shot, prefix cache on"])
    rows = []
    print(f"{args.model}, {len(sentences)} sentences, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'variant':<42} {'tokens/prompt':>13} {'seconds':>8} {'vs 0-shot':>9}")
    for key in keys:
        median = statistics.median(times[key])
        rows.append({"variant": key, "prompt_tokens": prompt_tokens[key], "seconds": median, "ratio": median / base,
                     "repeats": times[key]})
        print(f"{key:<42} {prompt_tokens[key]:13.1f} {median:8.2f} {median / base:8.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "sentences": len(sentences), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
