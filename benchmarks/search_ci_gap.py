"""Does adopting only CI-backed gains shrink the search's dev-to-test gap?

Runs ``tpembed search``'s coordinate ascent twice over the same space on the same dev pairs: once
adopting any higher dev score (the default), once adopting a change only when its dev gain's 95%
paired bootstrap CI lies above 0 (``require_ci``, ``--adopt-if-ci-above-zero``). The second run's rows
all come from the embedding cache (the same rows). Then the start candidate and both winners are
evaluated on the 7 STS test tasks (``run_evaluation``, cached: each costs one full evaluation the
first time) and their result JSONs are written, so ``tpembed compare`` can put CIs on the test
differences.

Reported per rule: the winner's dev score and dev gain over the start; its test STS-B and test
average and their gains over the start; the *gap* = dev gain - test gain (how much of the dev gain
the test set did not confirm). The default space is the round-3 search of BENCHMARKS.md.

Example (a full-dev search is slower; --subsample 500 matches BENCHMARKS.md):
    python benchmarks/search_ci_gap.py --model smollm2-135m --subsample 500 --out results/search_ci_gap
    tpembed compare results/search_ci_gap/start.json results/search_ci_gap/any-gain.json \\
        results/search_ci_gap/ci-above-zero.json --out results/search_ci_gap/compare
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tpembed.config import resolve_config
from tpembed.evaluation import ensure_senteval, tasks_for
from tpembed.evaluation.pipeline import run_evaluation
from tpembed.tuning import (SearchSpace, load_for_search, parse_cp_layers, parse_demos, parse_floats, parse_layers,
                            parse_prompt_options, parse_tp_options, run_search, write_outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", default="prompteol,cot,ke,cot+ke,prompteol+cot")
    parser.add_argument("--demos", default="storm,none,jockey,chef,market")
    parser.add_argument("--tp", default="vanilla,1-2,1-3,1-4")
    parser.add_argument("--cp-layers", default="off,2,4,6")
    parser.add_argument("--cp-alphas", default="0.25")
    parser.add_argument("--pooling", default="last_token,attention_sum")
    parser.add_argument("--outputs", default="15..30")
    parser.add_argument("--max-window", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=None, help="N evenly spaced dev pairs (default: all 1,500)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs per task (smoke runs only)")
    parser.add_argument("--skip-test", action="store_true", help="only the two searches (no test evaluations)")
    parser.add_argument("--out", type=Path, default=Path("results/search_ci_gap"))
    args = parser.parse_args()

    base = resolve_config(None, {"model": args.model}).encoder_config()
    space = SearchSpace(prompts=parse_prompt_options(args.prompts), tp=parse_tp_options(args.tp),
                        cp_layers=parse_cp_layers(args.cp_layers), cp_alphas=parse_floats(args.cp_alphas),
                        cp_mode=base.cp_mode, poolings=[p.strip() for p in args.pooling.split(",") if p.strip()],
                        demos=parse_demos(args.demos), outputs=parse_layers(args.outputs), max_window=args.max_window)
    data = ensure_senteval(args.data, tasks_for("sts", "test") + ["STSBenchmark-dev"])
    loaded = load_for_search(base, space)
    settings = base.model_dump(exclude={"model", "cp_mode", "prompt_method", "demonstration", "use_which_plan",
                                        "tp_starting_index", "tp_exiting_index", "cp_layer", "cp_alpha", "pooling",
                                        "output_layer"})
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for label, require_ci in (("any-gain", False), ("ci-above-zero", True)):
        result = run_search(loaded, space, data_dir=data, rounds=args.rounds, subsample=args.subsample,
                            limit=args.limit, require_ci=require_ci, **settings)
        write_outputs(result, args.out / f"search-{label}", f"{Path(args.model).stem}-{label}")
        start = result.evaluations[0]
        refused = sum(1 for e in result.evaluations if e.gain is not None and e.gain > 0 and not e.adopted)
        runs[label] = {"result": result, "start": start.candidate, "start_dev": start.spearman,
                       "best_dev": result.best_score, "refused": refused,
                       "adopted": sum(e.adopted for e in result.evaluations[1:])}
        print(f"{label}: dev {result.best_score:.2f} ({result.best.label()}); adopted {runs[label]['adopted']}, "
              f"refused {refused} higher-scoring change(s)", flush=True)

    summary: dict = {"model": args.model, "subsample": args.subsample, "rounds": args.rounds, "rules": {}}
    if not args.skip_test:
        any_run = runs["any-gain"]["result"]
        start_cfg = any_run.run_config(runs["any-gain"]["start"])
        start_res = run_evaluation(start_cfg, data, name="start", output=args.out / "start.json", loaded=loaded,
                                   limit=args.limit)
        summary["start"] = {"dev": runs["any-gain"]["start_dev"], "test": start_res["scores"]}
        for label, run in runs.items():
            res = run_evaluation(run["result"].run_config(), data, name=label, output=args.out / f"{label}.json",
                                 loaded=loaded, limit=args.limit)
            dev_gain = run["best_dev"] - run["start_dev"]
            stsb_gain = res["scores"]["STSBenchmark"] - start_res["scores"]["STSBenchmark"]
            avg_gain = res["scores"]["STSAvg"] - start_res["scores"]["STSAvg"]
            summary["rules"][label] = {
                "label": run["result"].best.label(), "dev": run["best_dev"], "dev_gain": dev_gain,
                "test_stsb": res["scores"]["STSBenchmark"], "test_avg": res["scores"]["STSAvg"],
                "test_stsb_gain": stsb_gain, "test_avg_gain": avg_gain,
                "gap_stsb": dev_gain - stsb_gain, "gap_avg": dev_gain - avg_gain,
                "adopted": run["adopted"], "refused": run["refused"],
            }
        print("| rule | winner | dev | dev gain | STS-B test gain | STS avg test gain | gap (STS-B) | gap (avg) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for label, r in summary["rules"].items():
            winner = r["label"].replace("|", "/")
            print(f"| {label} | {winner} | {r['dev']:.2f} | {r['dev_gain']:+.2f} | {r['test_stsb_gain']:+.2f} | "
                  f"{r['test_avg_gain']:+.2f} | {r['gap_stsb']:+.2f} | {r['gap_avg']:+.2f} |")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
