"""STS-B dev Spearman x100 of the mean pooling baseline next to last-token pooling, vanilla and TP.

    python benchmarks/mean_pooling_dev.py [--configs smollm2-135m smollm2-135m-tp] [--limit N]

Each named config is scored as it is (last_token) and with ``pooling: mean``, on the full STS-B dev
set (the embedding cache makes a rerun free). Dev only: no test set is touched.
"""

from __future__ import annotations

import argparse
import json

from tpembed.config import resolve_config
from tpembed.evaluation.pipeline import default_data_dir, run_evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["smollm2-135m", "smollm2-135m-tp", "gemma3-270m", "gemma3-270m-tp"])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    rows = []
    for name in args.configs:
        for pooling in ("last_token", "mean"):
            config = resolve_config(name, {"pooling": pooling, "mode": "dev", "task_set": "stsb"})
            result = run_evaluation(config, default_data_dir(), name=name, limit=args.limit, progress=False)
            score = result["scores"]["STSBenchmark-dev"]
            rows.append({"config": name, "pooling": pooling, "stsb_dev": score, "seconds": result["wall_seconds"]})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| config | plan | output layer | last_token | mean |\n|---|---|---|---:|---:|")
    for name in args.configs:
        config = resolve_config(name)
        by = {r["pooling"]: r["stsb_dev"] for r in rows if r["config"] == name}
        plan = "vanilla" if config.use_which_plan == "vanilla" else f"TP [{config.tp_starting_index}, {config.tp_exiting_index})"
        print(f"| {name} | {plan} | {config.output_layer} | {by['last_token']:.2f} | {by['mean']:.2f} |")


if __name__ == "__main__":
    main()
