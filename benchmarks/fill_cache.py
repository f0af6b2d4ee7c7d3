"""Fill the embedding cache for a named config at several output layers from ONE forward pass.

`tpembed run NAME --set output_layer=K` for each K then reads every vector from the cache and
only runs the scoring. The vectors are the ones `run` would compute itself (same namespaces,
same 4096-sentence chunks, through `tpembed.tuning.encode_layers_cached`, the tuners' own path;
tests/test_sweep.py checks it). Example:

    python benchmarks/fill_cache.py smollm2-135m --set task_set=transfer --outputs 28 30
    tpembed run smollm2-135m --set task_set=transfer -o results/full/smollm2-135m-transfer.json
    tpembed run smollm2-135m --set task_set=transfer --set output_layer=28 -o ...

With --claims DIR, several processes running the same command share the work: each takes the
next 4096-sentence chunk nobody has claimed (an empty file per chunk in DIR; delete DIR after
an interrupted run).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from tpembed import Encoder, load_model
from tpembed.config import default_config_path, parse_overrides, resolve_run_config
from tpembed.evaluation import task_sentences, tasks_for
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.tuning import encode_layers_cached

CHUNK = 4096  # cache.cached's chunk: a cold `tpembed run` encodes these very chunks


def _claim(claims: Path | None, index: int) -> bool:
    if claims is None:
        return True
    try:
        os.close(os.open(claims / f"chunk-{index:05d}", os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="entry of the config file")
    parser.add_argument("--config", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--outputs", type=int, nargs="+", required=True, help="output layers (1..L)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--claims", type=Path, default=None, help="share chunks with other processes")
    args = parser.parse_args()

    config = resolve_run_config(args.config or default_config_path(), args.name, parse_overrides(args.overrides))
    data_dir = args.data or default_data_dir()
    sentences = task_sentences(tasks_for(config.task_set, config.mode), data_dir, args.limit)
    loaded = load_model(config.model, device=config.device, dtype=config.dtype)
    encoder = Encoder(loaded, config=config.encoder_config())
    if args.claims is not None:
        args.claims.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done = 0
    for index, start in enumerate(range(0, len(sentences), CHUNK)):
        if _claim(args.claims, index):
            chunk = sentences[start:start + CHUNK]
            encode_layers_cached(encoder, chunk, sorted(set(args.outputs)), use_cache=True, progress=True)
            done += len(chunk)
            print(f"chunk {index}: {len(chunk)} sentences, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"{done} of {len(sentences)} sentences here, layers {sorted(set(args.outputs))}: "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
