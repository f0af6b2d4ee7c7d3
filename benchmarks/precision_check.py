"""Which lower precision pays on this CPU, at what quality? fp32 against bf16, bf16 autocast and int8.

    python benchmarks/precision_check.py --threads 2 --out results/precision_check.json

Variants of each config (default: the vanilla and the best recipe of SmolLM2), on the same model:

* ``fp32``: the default on a CPU;
* ``bf16``: the model in bf16 (``dtype="bfloat16"``): every activation is rounded to bf16;
* ``bf16 autocast``: fp32 weights, ``torch.autocast("cpu", bfloat16)`` around ``encode``: matmuls
  in bf16, the residual stream, norms and softmax in fp32 (what "keep the sensitive part in fp32"
  gives at most);
* ``int8 dynamic``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (int8 weights,
  activations quantized per batch); its Linear is no nn.Linear, and the levers find the attention
  output projection they hook all the same (``tpembed.levers.hooks.output_projection``).
* ``int8 weight-only`` (torchao ``Int8WeightOnlyConfig``, when torchao is installed): int8 weights,
  floating-point activations, so SmolLM2's outlier activation channels are not rounded;
* ``int8 dynamic per-token`` (torchao ``Int8DynamicActivationInt8WeightConfig``): int8 weights and
  activations quantized per token rather than per tensor.

torchao's configs swap each Linear's weight for a tensor subclass inside the same module, so the
hooks and the levers keep working; the lm_head (never run; EmbedFilter reads its weight) is left out.

With ``--memory``, each variant is also loaded alone in a fresh process (this script with
``--probe``) that reports its resident memory after loading and its peak RSS (VmHWM, reset after
loading) while encoding the timed sentences.

Each variant encodes the full STS-B dev set (Spearman x100; cosine of each sentence's vector to
fp32's) and is timed on the first ``--speed-limit`` dev sentences, variants interleaved over
``--repeats`` rounds (median). A precision ships by default only if it is faster at equal quality.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import dev_pairs, normalized, spearman_x100
from speed import PeakMemory, _status_kib

from tpembed import Encoder, load_model
from tpembed.config import resolve_config
from tpembed.models import LoadedModel, find_decoder_layers

VARIANTS = ["fp32", "bf16", "bf16 autocast", "int8 dynamic", "int8 weight-only", "int8 dynamic per-token"]
TORCHAO_CONFIGS = {"int8 weight-only": "Int8WeightOnlyConfig",
                   "int8 dynamic per-token": "Int8DynamicActivationInt8WeightConfig"}


def quantized(loaded: LoadedModel, label: str, in_place: bool = False) -> LoadedModel:
    """``loaded`` with its decoder Linear layers in int8 (``label`` picks how); the lm_head is never run."""
    clone = copy.copy(loaded)
    model = loaded.model if in_place else copy.deepcopy(loaded.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (torchao is its successor)
        if label == "int8 dynamic":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            import torchao.quantization as tq
            tq.quantize_(model, getattr(tq, TORCHAO_CONFIGS[label])(),
                         filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and not fqn.endswith("lm_head"))
    clone.model = model
    clone.layers = find_decoder_layers(model)  # the hooks must go on the copy's layers, not the original's
    return clone


def available(label: str) -> bool:
    """Whether this machine can build the variant (the torchao ones need torchao)."""
    if label not in TORCHAO_CONFIGS:
        return True
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def build(name: str, labels: list[str], in_place: bool = False) -> dict[str, Encoder]:
    """One Encoder per variant label, all on one fp32 load of the model (bf16: its own load)."""
    fp32_model = None
    if any(label != "bf16" for label in labels):
        fp32_model = load_model(resolve_config(name).model, device="cpu", dtype="float32")
    encoders = {}
    for label in labels:
        if label == "bf16":
            encoders[label] = Encoder(name, device="cpu", dtype="bfloat16")
        elif label in ("fp32", "bf16 autocast"):
            encoders[label] = Encoder(fp32_model, config=name, device="cpu", dtype="float32")
        else:
            encoders[label] = Encoder(quantized(fp32_model, label, in_place), config=name, device="cpu", dtype="float32")
    return encoders


def encode(label: str, encoder: Encoder, sentences: list[str]) -> np.ndarray:
    """The variant's vectors: ``bf16 autocast`` runs the fp32 model under CPU autocast."""
    if label == "bf16 autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encoder.encode(sentences, show_progress_bar=False)
    return encoder.encode(sentences, show_progress_bar=False)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's weights as stored (tied tensors once; torchao subclasses and int8 packs unwrapped)."""
    seen: set[int] = set()

    def size(value: object) -> int:
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        if not isinstance(value, torch.Tensor):
            return 0
        if hasattr(value, "__tensor_flatten__"):  # torchao's quantized weights: int8 data + scales
            names, _ = value.__tensor_flatten__()
            return sum(size(getattr(value, n)) for n in names)
        if value.is_quantized:  # torch.ao's packed int8 weight
            return value.numel() * value.element_size()
        key = value.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return value.untyped_storage().nbytes()

    state = model.state_dict(keep_vars=True)
    return sum(size(v) for k, v in state.items() if not k.startswith("lm_head"))


def probe(name: str, label: str, sentences: list[str]) -> dict[str, float]:
    """Memory of one variant alone in this process: resident after loading, peak while encoding."""
    encoder = build(name, [label], in_place=True)[label]
    gc.collect()
    with PeakMemory(torch.device("cpu")) as memory:
        encode(label, encoder, sentences)
    return {"weights_mib": weight_bytes(encoder.loaded.model) / 2**20, "rss_after_load_mib": memory.before / 2**20,
            "peak_rss_encoding_mib": memory.peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["smollm2-135m", "smollm2-135m-best"])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-limit", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also measure each variant alone in a fresh process")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: one variant's memory, as JSON
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s1, s2, gold = dev_pairs(args.data)
    dev = list(dict.fromkeys(s1 + s2))
    timed = dev[: args.speed_limit]
    if args.probe:
        before = (_status_kib("VmRSS") or 0) / 1024
        row = probe(args.configs[0], args.probe, timed)
        row["rss_before_load_mib"] = before
        print(json.dumps(row))
        return

    labels = [label for label in args.variants if available(label)]
    results = {}
    for name in args.configs:
        encoders = build(name, labels)
        reference = encode("fp32", encoders["fp32"], dev)
        rows = {}
        for label, encoder in encoders.items():
            vectors = reference if label == "fp32" else encode(label, encoder, dev)
            cos = (normalized(vectors) * normalized(reference)).sum(axis=1)
            rows[label] = {"stsb_dev": spearman_x100(dict(zip(dev, vectors)), s1, s2, gold),
                           "cosine_to_fp32_mean": float(cos.mean()), "cosine_to_fp32_min": float(cos.min()), "wall": []}
        for r in range(args.repeats):
            for label in labels[r % len(labels):] + labels[: r % len(labels)]:
                start = time.perf_counter()
                encode(label, encoders[label], timed)
                rows[label]["wall"].append(time.perf_counter() - start)
        for label in labels:
            rows[label]["sentences_per_s"] = len(timed) / statistics.median(rows[label]["wall"])
        del encoders
        gc.collect()
        if args.memory:
            for label in labels:
                command = [sys.executable, __file__, "--configs", name, "--probe", label, "--threads", str(args.threads),
                           "--speed-limit", str(args.speed_limit)] + (["--data", args.data] if args.data else [])
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                rows[label].update(json.loads(done.stdout.strip().splitlines()[-1]))
        results[name] = rows
        print(f"\n{name} ({len(timed)} sentences timed, {args.repeats} interleaved rounds, {args.threads} threads)")
        print("| variant | sentences/s | STS-B dev | cosine to fp32 (mean / min) | weights MiB | RSS after load MiB "
              "| peak RSS encoding MiB |")
        print("|---|---:|---:|---|---:|---:|---:|")
        for label, row in rows.items():
            memory = (f"{row['weights_mib']:.0f} | {row['rss_after_load_mib']:.0f} | {row['peak_rss_encoding_mib']:.0f}"
                      if "weights_mib" in row else "- | - | -")
            print(f"| {label} | {row['sentences_per_s']:.1f} | {row['stsb_dev']:.2f} | "
                  f"{row['cosine_to_fp32_mean']:.4f} / {row['cosine_to_fp32_min']:.4f} | {memory} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
