"""tpembed's Encoder vs tpembed through sentence-transformers vs a plain sentence-transformers model.

One process, one model (the packaged SmolLM2-135M by default), the same STS-B test sentences:

* ``encoder``       tpembed's Encoder with a named config (default ``smollm2-135m-tp``: TP [1, 2),
                    output layer 28 of 30).
* ``st-tpembed``    the same config through ``tpembed.to_sentence_transformer`` (``model.encode``).
* ``encoder-chunks`` the encoder called once per chunk of 32 sentences cut by character length,
                    the way sentence-transformers batches (what its batching alone costs).
* ``encoder-plain`` tpembed's Encoder, vanilla PromptEOL, final layer: the same vectors the plain
                    model should give, so it separates implementation speed from the method.
* ``st-plain``      what a user would otherwise build: ``Transformer`` on the same converted
                    weights + last-token ``Pooling``, sentences pre-wrapped in the PromptEOL string
                    tpembed renders for the vanilla plan (``encode(prompt=...)`` only prepends, so
                    it cannot place the sentence inside the prompt; no TP, no early exit).

Timing: the first --limit distinct sentences, variants interleaved across --repeats (the first
variant rotates). Each run records wall time and the process's CPU time; on a shared machine CPU
time (with --threads 1) is the steadier measure of work. Reported: medians, and the median over
repeats of each variant's time / the encoder's time in the same repeat. Quality: one more pass per
variant over the whole STS-B test set, scored by the same code as ``tpembed eval --task-set stsb``
(Spearman x100).

Example:
    python benchmarks/sentence_transformers_compare.py --limit 320 --repeats 3 --threads 1 --out results/st_compare.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling

from tpembed import Encoder, load_model, to_sentence_transformer
from tpembed.config import default_config_path, resolve_run_config
from tpembed.evaluation import evaluate, load_task
from tpembed.evaluation.report import library_versions
from tpembed.models import _resolve_source, default_cache_dir
from tpembed.prompts import PROMPTS, normalize_sentence, render
from tpembed.evaluation.pipeline import default_data_dir

EncodeFn = Callable[[list[str]], np.ndarray]


def plain_sentence_transformer(folder: str, device: str) -> SentenceTransformer:
    """Transformer + last-token pooling on an HF folder: sentence-transformers without tpembed.

    The text modality only: with the folder's chat template, sentence-transformers 6 would
    otherwise wrap every input in the chat format (system prompt, user turn), not the PromptEOL string.
    """
    transformer = Transformer(
        folder,
        model_kwargs={"dtype": torch.float32},
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(modules=[transformer, pooling], device=device)


def prompteol(sentence: str) -> str:
    """The vanilla PromptEOL string tpembed builds for a sentence (paper's normalisation included)."""
    return render(PROMPTS["prompteol"].templates[0], normalize_sentence(sentence), use_placeholder=False).text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-135m-tp", help="named config of configs/config.yaml")
    parser.add_argument("--data", default=None, help="SentEval folder (default: $TPEMBED_DATA or ../shared/senteval)")
    parser.add_argument("--limit", type=int, default=320, help="distinct STS-B test sentences timed (2551 in all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip-quality", action="store_true", help="no full STS-B test pass")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data or default_data_dir()
    config = resolve_run_config(default_config_path(), args.config).encoder_config()
    device = "cpu" if config.device == "auto" and not torch.cuda.is_available() else config.device
    batch_size = config.batch_size
    sentences = list(dict.fromkeys(load_task("STSBenchmark", data_dir).sentences()))[: args.limit]

    loaded = load_model(config.model, device=device, dtype=config.dtype)
    encoder = Encoder(loaded, config=config)
    plain_encoder = Encoder(loaded, config=config, use_which_plan="vanilla", output_layer=-1)
    st_tpembed = to_sentence_transformer(config, device=device)  # loads its own copy, as a user would
    folder, _ = _resolve_source(config.model, default_cache_dir())  # the converted HF folder
    st_plain = plain_sentence_transformer(str(folder), device)

    def in_st_chunks(xs: list[str]) -> np.ndarray:
        """sentence-transformers' batching: longest first by characters, order restored after."""
        order = sorted(range(len(xs)), key=lambda i: -len(xs[i]))
        out = np.empty((len(xs), encoder.embedding_dim), dtype=np.float32)
        for k in range(0, len(xs), batch_size):
            rows = order[k : k + batch_size]
            out[rows] = encoder.encode([xs[i] for i in rows], batch_size=batch_size, show_progress_bar=False)
        return out

    variants: dict[str, EncodeFn] = {
        "encoder": lambda xs: encoder.encode(xs, batch_size=batch_size, show_progress_bar=False),
        "encoder-chunks": in_st_chunks,
        "st-tpembed": lambda xs: st_tpembed.encode(xs, batch_size=batch_size, show_progress_bar=False),
        "encoder-plain": lambda xs: plain_encoder.encode(xs, batch_size=batch_size, show_progress_bar=False),
        "st-plain": lambda xs: st_plain.encode([prompteol(x) for x in xs], batch_size=batch_size,
                                               show_progress_bar=False),
    }
    names = list(variants)
    for fn in variants.values():  # warm-up (allocator, first-call overheads)
        fn(sentences[: 2 * batch_size])

    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = np.asarray(variants[name](sentences))
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            print(f"repeat {r + 1}/{args.repeats} {name}: {wall[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s CPU",
                  flush=True)

    median = {n: statistics.median(wall[n]) for n in names}
    median_cpu = {n: statistics.median(cpu[n]) for n in names}
    ratio = {n: statistics.median(a / b for a, b in zip(wall[n], wall["encoder"])) for n in names}
    ratio_cpu = {n: statistics.median(a / b for a, b in zip(cpu[n], cpu["encoder"])) for n in names}
    scale = float(np.abs(outputs["encoder"]).max())
    diffs = {
        "st-tpembed vs encoder": float(np.abs(outputs["st-tpembed"] - outputs["encoder"]).max()),
        "st-tpembed vs encoder-chunks": float(np.abs(outputs["st-tpembed"] - outputs["encoder-chunks"]).max()),
        "st-plain vs encoder-plain": float(np.abs(outputs["st-plain"] - outputs["encoder-plain"]).max()),
    }
    quality: dict[str, float] = {}
    if not args.skip_quality:
        for name in names:
            result = evaluate(["STSBenchmark"], data_dir, variants[name], progress=False)
            quality[name] = result["scores"]["STSBenchmark"]
            print(f"STS-B test {name}: {quality[name]:.2f}", flush=True)

    print(f"\n{len(sentences)} sentences, batch size {batch_size}, {torch.get_num_threads()} thread(s), "
          f"config {args.config} ({config.use_which_plan}, output layer {config.output_layer})")
    print("| variant | median wall s | sentences/s (wall) | median CPU s | sentences/CPU s "
          "| wall / encoder | CPU / encoder | STS-B test Spearman |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        score = f"{quality[name]:.2f}" if name in quality else "-"
        print(f"| {name} | {median[name]:.2f} | {len(sentences) / median[name]:.1f} | {median_cpu[name]:.2f} | "
              f"{len(sentences) / median_cpu[name]:.1f} | {ratio[name]:.3f} | {ratio_cpu[name]:.3f} | {score} |")
    for what, diff in diffs.items():
        print(f"max abs diff {what}: {diff:.3g} (largest entry {scale:.3g})")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "config": args.config, "settings": config.model_dump(), "sentences": len(sentences),
            "batch_size": batch_size, "threads": torch.get_num_threads(), "wall": wall, "cpu": cpu,
            "median_wall": median, "median_cpu": median_cpu, "ratio_wall": ratio, "ratio_cpu": ratio_cpu,
            "stsb_test_spearman": quality, "max_abs_diff": diffs, "versions": library_versions(),
            "machine": platform.platform(),
        }, indent=2))


if __name__ == "__main__":
    main()
