"""STS-B dev Spearman x100 for vanilla and a few TP ranges, every output layer from one pass each.

Used to choose the packaged models' presets on dev only (never test). Example:
    python benchmarks/stsb_dev_grid.py --model smollm2-135m --exits 4 7 --out results/smollm2_dev.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tpembed import Encoder, load_model
from tpembed.evaluation import load_task, score_sts
from tpembed.evaluation._embeddings import EmbeddingTable
from tpembed.evaluation.pipeline import default_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt-method", default="prompteol")
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--exits", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--data", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pst-init", default="gaussian", choices=["gaussian", "zeros"])
    parser.add_argument("--skip-vanilla", action="store_true", help="only the TP rows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    data = load_task("STSBenchmark-dev", args.data or default_data_dir())
    sentences = data.sentences()
    loaded = load_model(args.model)
    layers = list(range(1, loaded.num_layers + 1))
    runs = ([] if args.skip_vanilla else [("vanilla", None)]) + [("tp", e) for e in args.exits]
    grid = []
    for plan, exit_ in runs:
        enc = Encoder(loaded, prompt_method=args.prompt_method, use_which_plan=plan,
                      tp_starting_index=args.start, tp_exiting_index=exit_ or 0, pst_init=args.pst_init,
                      batch_size=args.batch_size)
        t = time.perf_counter()
        per_layer = enc.encode_layers(sentences, layers)
        seconds = time.perf_counter() - t
        for k, vectors in per_layer.items():
            score = score_sts(data, EmbeddingTable(sentences, vectors))["score"]
            grid.append({"plan": plan, "tp_exiting_index": exit_, "output_layer": k, "spearman": score})
        best = max((g for g in grid if g["tp_exiting_index"] == exit_ and g["plan"] == plan), key=lambda g: g["spearman"])
        print(f"{plan} exit={exit_}: final layer {grid[-1]['spearman']:.2f}, best layer {best['output_layer']} "
              f"{best['spearman']:.2f} ({seconds:.0f} s)", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": loaded.identity, "prompt_method": args.prompt_method, "start": args.start, "pst_init": args.pst_init}
        args.out.write_text(json.dumps({**meta, "grid": grid}, indent=1))


if __name__ == "__main__":
    main()
