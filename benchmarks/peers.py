"""tpembed against the engines a user would pick instead, in one process, interleaved (issue 27, item 2).

    python benchmarks/peers.py --threads 2 --out results/peers.json

Engines, all on the same CPU threads and the same STS-B dev sentences:

* ``tpembed fp32`` / ``tpembed bf16``: ``Encoder(CONFIG, dtype=...)`` (default config ``smollm2-135m``:
  vanilla PromptEOL, last token of the final normed layer), no embedding cache;
* ``llama.cpp``: ``llama-cpp-python`` on the very GGUF file tpembed loads, fed the same prompt
  strings (``tpembed.prompts.render``), last-token pooling (``LLAMA_POOLING_TYPE_LAST``: the
  final normed hidden state of the last token, as tpembed), several sequences per ``llama_decode``
  (``--llama-seqs``, within ``--llama-batch`` tokens). Its tokens are checked against tpembed's:
  the share of prompts tokenized identically is reported. llama.cpp computes with the file's
  quantized weights; tpembed dequantizes them to fp32/bf16, so the vectors differ slightly: the
  cosine to tpembed fp32 is reported. ``--llama-formats`` times llama.cpp on other weight formats
  too, each made from that file by llama.cpp's own ``llama_model_quantize`` (allow_requantize:
  the Q4_1 values dequantized, then stored as e.g. BF16, F16 or Q8_0) into ``--llama-cache``; the
  file's own format uses the file as it is. One row per format, ``llama.cpp <format>``;
* ``MiniLM``: all-MiniLM-L6-v2 through sentence-transformers (benchmarks/minilm.py loads it from
  the PyPI wheel), the trained encoder.

Quality: Spearman x100 of cosine similarities on the full STS-B dev set (1,500 pairs, the choice
set). Agreement: per-sentence cosine of each LLM engine's vector with tpembed fp32's (dev set).
Speed: the first ``--speed-limit`` distinct dev sentences, each engine in turn, ``--repeats`` rounds
with the order rotated each round; sentences/s from the median wall time (and the range over the
rounds), process-CPU seconds too. The result JSON (``--out``) has one row per engine: engine,
format, sentences/s median and range, STS-B dev Spearman, threads, CPU model, load average.

llama-cpp-python must be built for this CPU; where ``-march=native`` is refused or a CPU
advertises instructions it cannot run (SIGILL), build it with the flags explicitly, e.g.:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
      -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON" \\
      pip install --no-cache-dir llama-cpp-python
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm import load_minilm, model_folder

from tpembed import Encoder
from tpembed.evaluation.data import load_task
from tpembed.embedding_cache import default_cache_dir
from tpembed.models import packaged_model_file
from tpembed.prompts import normalize_sentence, render

EncodeFn = Callable[[list[str]], np.ndarray]
FORMATS = {"tpembed fp32": "fp32", "tpembed bf16": "bf16", "MiniLM": "fp32"}  # llama.cpp's: its file's ftype


def dev_pairs(data: str | None) -> tuple[list[str], list[str], np.ndarray]:
    subset = load_task("STSBenchmark-dev", data).subsets["dev"]
    return list(subset.sent1), list(subset.sent2), np.asarray(subset.gold, dtype=float)


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def spearman_x100(vectors: dict[str, np.ndarray], s1: list[str], s2: list[str], gold: np.ndarray) -> float:
    a = normalized(np.stack([vectors[s] for s in s1]))
    b = normalized(np.stack([vectors[s] for s in s2]))
    return 100 * float(spearmanr((a * b).sum(axis=1), gold).statistic)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def gguf_format(gguf: Path) -> str:
    """The file's weight format as llama.cpp names its ftype, lower case: ``q4_1``, ``bf16`` ..."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(gguf).fields["general.file_type"]
    name = LlamaFileType(int(field.parts[field.data[0]][0])).name  # MOSTLY_Q4_1, MOSTLY_BF16, ALL_F32 ...
    return name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()


def llama_format_file(gguf: Path, fmt: str, cache: Path, threads: int) -> Path:
    """``gguf`` in weight format ``fmt`` (a llama.cpp ftype: ``bf16``, ``f16``, ``q8_0``, ``f32`` ...):
    the file itself when it is in that format, else made once by ``llama_model_quantize`` into ``cache``."""
    import llama_cpp

    if fmt == gguf_format(gguf):
        return gguf
    ftype = getattr(llama_cpp, "LLAMA_FTYPE_ALL_F32" if fmt == "f32" else f"LLAMA_FTYPE_MOSTLY_{fmt.upper()}", None)
    if ftype is None:
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_").lower() for n in dir(llama_cpp)
                       if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        raise SystemExit(f"--llama-formats: no llama.cpp ftype {fmt!r}; known: f32, {', '.join(known)}")
    out = cache / f"{gguf.stem}-to-{fmt.upper()}.gguf"
    if not out.exists() or out.stat().st_mtime < gguf.stat().st_mtime:
        cache.mkdir(parents=True, exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = ftype, True, threads
        partial = out.with_suffix(".partial")
        start = time.perf_counter()
        if llama_cpp.llama_model_quantize(str(gguf).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
            raise SystemExit(f"llama_model_quantize {gguf} -> {fmt} failed")
        partial.replace(out)
        print(f"llama.cpp: {gguf.name} -> {out} in {time.perf_counter() - start:.1f} s", flush=True)
    return out


def llama_engine(encoder: Encoder, gguf: Path, threads: int, n_batch: int, n_seqs: int, flash_attn: bool,
                 check_tokens_on: list[str]) -> tuple[EncodeFn, dict]:
    """llama.cpp on ``gguf`` with ``encoder``'s prompt strings, and its settings plus the share of
    ``check_tokens_on``'s prompts it tokenizes exactly as tpembed does."""
    import llama_cpp

    templates = encoder.prompt.templates
    plain = {"PrefixCache", "LastToken"}  # a cached prompt prefix changes no vector
    if len(templates) != 1 or any(type(lever).__name__ not in plain for lever in encoder.levers) \
            or encoder.config.output_layer not in (-1, encoder.loaded.num_layers):
        raise SystemExit("the llama.cpp peer runs plain prompt + last token: use a vanilla one-template config")
    template = templates[0]
    llm = llama_cpp.Llama(
        model_path=str(gguf), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
        n_ctx=n_batch, n_batch=n_batch, n_ubatch=n_batch, n_seq_max=n_seqs,
        n_threads=threads, n_threads_batch=threads, flash_attn=flash_attn, verbose=False,
    )

    def prompts(sentences: list[str]) -> list[str]:
        return [render(template, normalize_sentence(s), use_placeholder=False).text for s in sentences]

    def encode(sentences: list[str]) -> np.ndarray:
        # embed() packs consecutive inputs into one llama_decode up to n_batch tokens / n_seq_max sequences
        return np.asarray(llm.embed(prompts(sentences), normalize=False), dtype=np.float32)

    ours = encoder._tokenize_all([normalize_sentence(s) for s in check_tokens_on])[0]  # as encode() does
    same = sum(list(p.ids) == llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)
               for p, t in zip(ours, prompts(check_tokens_on)))
    info = {"llama_cpp_python": llama_cpp.__version__, "gguf": gguf.name, "format": gguf_format(gguf),
            "gguf_mib": round(gguf.stat().st_size / 2**20, 1), "n_batch": n_batch, "flash_attn": flash_attn,
            "sequences_per_batch": n_seqs, "token_agreement": same / len(check_tokens_on)}
    return encode, info


# (n_batch, sequences per llama_decode, flash attention) tried by --llama-grid
LLAMA_GRID = [(2048, 64, False), (2048, 1, False), (512, 16, False), (2048, 64, True), (1024, 32, True),
              (512, 16, True), (256, 8, True)]


def llama_grid(encoder: Encoder, gguf: Path, threads: int, timed: list[str]) -> None:
    """Sentences/s of llama.cpp under each LLAMA_GRID setting (one timed pass after a warm-up)."""
    print("| n_batch | sequences | flash attention | sentences/s |\n|---:|---:|---|---:|")
    for n_batch, n_seqs, flash_attn in LLAMA_GRID:
        encode, _ = llama_engine(encoder, gguf, threads, n_batch, n_seqs, flash_attn, timed[:8])
        encode(timed[:32])
        start = time.perf_counter()
        encode(timed)
        print(f"| {n_batch} | {n_seqs} | {'on' if flash_attn else 'off'} | "
              f"{len(timed) / (time.perf_counter() - start):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-135m", help="a vanilla one-prompt named config")
    parser.add_argument("--data", default=os.environ.get("TPEMBED_DATA"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-limit", type=int, default=512, help="distinct dev sentences timed per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality-limit", type=int, default=None, help="first N dev pairs for quality (smoke runs)")
    # defaults: llama.cpp's fastest setting of LLAMA_GRID here (--llama-grid prints them all)
    parser.add_argument("--llama-batch", type=int, default=512, help="llama.cpp n_batch = n_ubatch = n_ctx (tokens)")
    parser.add_argument("--llama-seqs", type=int, default=16, help="sequences per llama_decode (n_seq_max)")
    parser.add_argument("--llama-flash-attn", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--llama-formats", default=None,
                        help="comma-separated llama.cpp weight formats to time, e.g. q4_1,bf16,f16,q8_0 "
                             "(default: the GGUF's own); others are made from it with llama_model_quantize")
    parser.add_argument("--llama-cache", type=Path, default=default_cache_dir() / "gguf",
                        help="folder for the requantized GGUF files")
    parser.add_argument("--llama-grid", action="store_true", help="only time llama.cpp under each LLAMA_GRID setting")
    parser.add_argument("--engines", nargs="+", default=["tpembed fp32", "tpembed bf16", "llama.cpp", "MiniLM"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    s1, s2, gold = dev_pairs(args.data)
    if args.quality_limit:
        s1, s2, gold = s1[: args.quality_limit], s2[: args.quality_limit], gold[: args.quality_limit]
    dev_sentences = list(dict.fromkeys(s1 + s2))
    timed = dev_sentences[: args.speed_limit]

    engines: dict[str, EncodeFn] = {}
    info: dict[str, dict] = {}
    fp32 = Encoder(args.config, dtype="float32", device="cpu")
    model = fp32.config.model
    if args.llama_grid:
        llama_grid(fp32, packaged_model_file(model), args.threads, timed)
        return
    if "tpembed fp32" in args.engines:
        engines["tpembed fp32"] = lambda s: fp32.encode(s, show_progress_bar=False)
    if "tpembed bf16" in args.engines:
        bf16 = Encoder(args.config, dtype="bfloat16", device="cpu")
        engines["tpembed bf16"] = lambda s: bf16.encode(s, show_progress_bar=False)
    if "llama.cpp" in args.engines:
        gguf = packaged_model_file(model)
        formats = args.llama_formats.split(",") if args.llama_formats else [gguf_format(gguf)]
        for fmt in formats:
            path = llama_format_file(gguf, fmt.strip().lower(), args.llama_cache, args.threads)
            name = f"llama.cpp {gguf_format(path)}"
            engines[name], info[name] = llama_engine(
                fp32, path, args.threads, args.llama_batch, args.llama_seqs, args.llama_flash_attn, dev_sentences)
            if path != gguf:
                info[name]["requantized_from"] = gguf.name
    if "MiniLM" in args.engines:
        minilm = load_minilm(model_folder())
        engines["MiniLM"] = lambda s: minilm.encode(s, batch_size=32, convert_to_numpy=True)

    # quality and agreement on the full dev set
    reference = fp32.encode(dev_sentences, show_progress_bar=True)
    results: dict[str, dict] = {}
    for name, encode in engines.items():
        start = time.perf_counter()
        vectors = reference if name == "tpembed fp32" else encode(dev_sentences)
        table = dict(zip(dev_sentences, vectors))
        row = {"stsb_dev_spearman": spearman_x100(table, s1, s2, gold),
               "dev_encode_s": time.perf_counter() - start}
        if name != "MiniLM":
            cos = (normalized(vectors) * normalized(reference)).sum(axis=1)
            row["cosine_to_fp32"] = {"mean": float(cos.mean()), "min": float(cos.min())}
        row.update(engine=name.split(" ")[0], format=info[name]["format"] if name in info else FORMATS[name],
                   threads=args.threads, cpu_model=cpu_model())
        if name in info:
            row["token_agreement"] = info[name]["token_agreement"]
        results[name] = row
        print(f"{name}: STS-B dev {row['stsb_dev_spearman']:.2f}", row.get("cosine_to_fp32", ""), flush=True)

    # speed, interleaved
    names = list(engines)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up round: first-call costs (allocations, kernels) out of the timing
        engines[name](timed[:32])
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            engines[name](timed)
            walls[name].append(time.perf_counter() - w)
            cpus[name].append(time.process_time() - c)
    for name in names:
        wall = statistics.median(walls[name])
        results[name].update(sentences_per_s=len(timed) / wall, wall_s=walls[name], cpu_s=cpus[name],
                             sentences_per_s_range=[len(timed) / max(walls[name]), len(timed) / min(walls[name])])
    load_end = os.getloadavg()
    base = results[names[0]]["sentences_per_s"]

    print(f"\n{args.config} on {cpu_model()}, {args.threads} threads, "
          f"{len(timed)} sentences x {args.repeats} rounds (interleaved); load average {load_start[0]:.2f} at the "
          f"start, {load_end[0]:.2f} at the end")
    print("\n| engine | sentences/s [range] | vs " + names[0] + " | STS-B dev | cosine to tpembed fp32 (mean / min) "
          "| same tokens |")
    print("|---|---:|---:|---:|---|---:|")
    for name in names:
        r = results[name]
        cos = r.get("cosine_to_fp32")
        cos_text = f"{cos['mean']:.4f} / {cos['min']:.4f}" if cos else "-"
        low, high = r["sentences_per_s_range"]
        tokens = f"{100 * r['token_agreement']:.0f}%" if "token_agreement" in r else "-"
        print(f"| {name} | {r['sentences_per_s']:.1f} [{low:.1f}-{high:.1f}] | {r['sentences_per_s'] / base:.2f}x | "
              f"{r['stsb_dev_spearman']:.2f} | {cos_text} | {tokens} |")
    for name, settings in info.items():
        print(f"\n{name}: {settings}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"config": args.config, "threads": args.threads, "timed_sentences": len(timed),
                                        "repeats": args.repeats, "dev_pairs": len(gold), "engines": results,
                                        "info": info, "machine": platform.platform(),
                                        "cpu_model": cpu_model(), "load_average_start": load_start,
                                        "load_average_end": load_end}, indent=1))


if __name__ == "__main__":
    main()
