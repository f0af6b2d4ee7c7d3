"""A corpus run on a GPU: the Ray engine with one actor holding one GPU, against the local engine on it.

    python benchmarks/gpu_corpus.py --rows 4000 --out results/gpu/corpus.json

The first ``--rows`` distinct SentEval STS sentences as a .txt file, embedded with ``--config``
(default the TP preset) in bf16 on CUDA by the local engine and by Ray (``--gpus-per-worker 1``,
one actor, a local Ray instance). Checks: every row exactly once in each output, and each Ray
vector within relative 5e-2 (bf16) of the local one; prints rows/s of each. Exits 1 on a failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tpembed import embed_corpus
from tpembed.evaluation import task_sentences

STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark"]


def read_output(folder: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(folder / "embeddings")
    ids = table.column("id").to_pylist()
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{folder}: {len(ids) - len(set(ids))} duplicated rows")
    return dict(zip(ids, vectors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--config", default="smollm2-135m-tp")
    parser.add_argument("--rows-per-shard", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=os.environ.get("TPEMBED_DATA"))
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke run of this script")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--gpus-per-worker", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    texts = task_sentences(STS, args.data)[: args.rows]
    settings = {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    result: dict = {"rows": len(texts), "config": args.config, **settings}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "sts.txt"
        corpus.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        outputs = {}
        for engine, extra in (("local", {}), ("ray", {"workers": 1, "gpus_per_worker": args.gpus_per_worker})):
            out = Path(tmp) / engine
            start = time.perf_counter()
            manifest = embed_corpus(str(corpus), out, args.config, engine=engine, rows_per_shard=args.rows_per_shard,
                                    progress=False, **extra, **settings)
            wall = time.perf_counter() - start
            outputs[engine] = read_output(out)
            result[engine] = {"wall_s": wall, "rows_per_s_end_to_end": manifest["embedded"] / wall,
                              "embedded": manifest["embedded"], "rejected": manifest["rejected"]}
            print(f"{engine}: {manifest['embedded']} rows in {wall:.1f} s "
                  f"({manifest['embedded'] / wall:.1f} rows/s end to end, model load included)", flush=True)
    local, ray = outputs["local"], outputs["ray"]
    problems = []
    if set(local) != set(ray) or len(local) != len(texts):
        problems.append(f"rows differ: local {len(local)}, ray {len(ray)}, input {len(texts)}")
    common = sorted(set(local) & set(ray))
    a, b = np.stack([local[i] for i in common]), np.stack([ray[i] for i in common])
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    result["ray_vs_local_max_rel"] = float(rel.max())
    if rel.max() > 5e-2:
        problems.append(f"Ray vectors differ from local ones: max relative {rel.max():.3g}")
    result["problems"] = problems
    print(f"Ray vs local: max relative difference {rel.max():.2e}; " + ("PASS" if not problems else "; ".join(problems)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
