"""What the timing scripts share: their thread/data/output options and the STS-B dev sentences they encode."""

from __future__ import annotations

import argparse

import torch

from tpembed.evaluation import load_task
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.prompts import normalize_sentence


def add_common_options(parser: argparse.ArgumentParser, limit: int) -> None:
    """``--limit`` (distinct dev sentences), ``--threads``, ``--data`` and ``--out``."""
    parser.add_argument("--limit", type=int, default=limit, help="distinct STS-B dev sentences")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=None)


def dev_sentences(args: argparse.Namespace) -> list[str]:
    """Set torch's threads, then return the first ``--limit`` distinct STS-B dev sentences (normalised)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = load_task("STSBenchmark-dev", args.data or default_data_dir()).subsets["dev"]
    return list(dict.fromkeys(normalize_sentence(s) for s in [*dev.sent1, *dev.sent2]))[: args.limit]
