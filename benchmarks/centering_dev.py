"""Dev-only look at one more post-processing lever: subtract a reference corpus's mean vector.

LLM last-token states are anisotropic, so centering (and removing the top principal directions,
"all-but-the-top", Mu & Viswanath 2018) is a common training-free fix. This scores a named
config on STS-B dev (all 1,500 pairs) plain, centered on the dev sentences themselves (transductive:
an upper bound, not a usable recipe), centered on a reference corpus that is not STS-B (SICK's
train sentences, labels unused), and with the top k reference directions removed.

    python benchmarks/centering_dev.py smollm2-135m-best --reference 1000

Nothing here looks at a test set.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from tpembed.embedding_cache import EmbeddingCache, cached, default_cache_dir
from tpembed.config import default_config_path, resolve_run_config
from tpembed.encoder import Encoder
from tpembed.evaluation.data import load_task, resolve_data_dir
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.identity import cache_namespace
from tpembed.models import load_checked


def cosine_spearman(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 100 * spearmanr((a * b).sum(1), gold).correlation


def sick_train_sentences(data_dir) -> list[str]:
    path = resolve_data_dir(data_dir) / "SICK" / "SICK_train.txt"
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return sorted({r[1] for r in rows} | {r[2] for r in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="named config")
    parser.add_argument("--reference", type=int, default=1000, help="reference sentences (SICK train)")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    data_dir = args.data or default_data_dir()

    config = resolve_run_config(default_config_path(), args.name)
    encoder = Encoder(load_checked(config, progress=False), config=config.encoder_config())
    cache = EmbeddingCache(default_cache_dir() / "embeddings", cache_namespace(encoder))
    encode = cached(lambda s: encoder.encode(s, show_progress_bar=True), cache)

    dev = load_task("STSBenchmark-dev", data_dir).subsets["dev"]
    a, b = encode(list(dev.sent1)), encode(list(dev.sent2))
    reference = encode(sick_train_sentences(data_dir)[: args.reference])
    print(f"{args.name}, STS-B dev (1,500 pairs), Spearman x100")
    print(f"plain                                   {cosine_spearman(a, b, dev.gold):.2f}")
    mu_dev = np.concatenate([a, b]).mean(0)
    print(f"centered on dev itself (transductive)   {cosine_spearman(a - mu_dev, b - mu_dev, dev.gold):.2f}")
    mu = reference.mean(0)
    print(f"centered on {len(reference)} SICK-train sentences {cosine_spearman(a - mu, b - mu, dev.gold):.2f}")
    _, _, vt = np.linalg.svd(reference - mu, full_matrices=False)
    for k in (1, 2, 5, 10):
        top = vt[:k]

        def strip(x: np.ndarray) -> np.ndarray:
            return (x - mu) - ((x - mu) @ top.T) @ top

        print(f"all-but-the-top k={k:<2}                     {cosine_spearman(strip(a), strip(b), dev.gold):.2f}")


if __name__ == "__main__":
    main()
