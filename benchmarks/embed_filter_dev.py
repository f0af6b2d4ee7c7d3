"""EmbedFilter on STS-B dev: named configs with and without the filter, at several ratios.

Scores each config on the full STS-B dev set (1,500 pairs) plain and with the lever's own projection
(``tpembed.levers.embed_filter.bulk_projection``, what ``embed_filter: RATIO`` applies) at each ratio,
on the same vectors (from the embedding cache when a run has filled it; the projection is linear, so
applying it to a layer list's mean equals the lever's per-layer application up to float rounding),
plus variants that drop only the top or only the bottom of the spectrum (the lever drops both edges),
to show where a gain comes from. Nothing here looks at a test set.

    python benchmarks/embed_filter_dev.py smollm2-135m smollm2-135m-tp smollm2-135m-best --ratios 1.2 1.5 2 4
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from tpembed.config import resolve_config
from tpembed.embedding_cache import EmbeddingCache, cached, default_cache_dir
from tpembed.encoder import Encoder
from tpembed.evaluation.data import load_task
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.identity import cache_namespace
from tpembed.levers.embed_filter import bulk_projection, placeholder_row
from tpembed.models import load_checked


def spearman(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 100 * spearmanr((a * b).sum(1), gold).correlation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="named configs")
    parser.add_argument("--ratios", nargs="+", type=float, default=[1.2, 1.5, 2.0, 4.0])
    parser.add_argument("--edge", nargs="+", type=int, default=[16, 64], help="directions dropped at one edge only")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    dev = load_task("STSBenchmark-dev", args.data or default_data_dir()).subsets["dev"]
    loaded = {}
    for name in args.names:
        config = resolve_config(name).encoder_config()
        if config.model not in loaded:
            loaded[config.model] = load_checked(config, progress=False)
        model = loaded[config.model]

        def encode(cfg, model=model):
            encoder = Encoder(model, config=cfg)
            cache = EmbeddingCache(default_cache_dir() / "embeddings", cache_namespace(encoder))
            embed = cached(lambda s: encoder.encode(s, show_progress_bar=False), cache)
            return embed(list(dev.sent1)), embed(list(dev.sent2))

        a, b = encode(config)
        cells = [f"plain {spearman(a, b, dev.gold):.2f}"]
        hidden = a.shape[1]
        for ratio in args.ratios:
            projection = bulk_projection(model.unembedding, max(1, round(hidden / ratio)), placeholder_row(model.tokenizer))
            cells.append(f"1/{ratio:g} {spearman(a @ projection, b @ projection, dev.gold):.2f}")
        # one edge at a time, on the same vectors (the lever always drops both)
        weight = model.unembedding.detach().double()
        keep = np.ones(weight.shape[0], dtype=bool)
        row = placeholder_row(model.tokenizer)
        if row < len(keep):
            keep[row] = False
        _, _, vh = np.linalg.svd(weight.numpy()[keep], full_matrices=False)
        for k in args.edge:
            for label, band in ((f"-top{k}", vh[k:]), (f"-bottom{k}", vh[: len(vh) - k])):
                cells.append(f"{label} {spearman(a @ band.T, b @ band.T, dev.gold):.2f}")
        print(f"{name:<22} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
