"""Speed and memory of tpembed against the paper's way of embedding, in one process.

Same model, same sentences (distinct STS-B test sentences, first --limit), variants interleaved
across repeats (the starting variant rotates) so background load hits them alike; peak memory is
taken afterwards in one untimed run per variant:

* ``reference``   the paper's path: the full causal LM (lm_head included), ``output_hidden_states=True``,
                  batches of --batch-size in input order, left padding, ``hidden_states[L][:, -1]``,
                  vanilla PromptEOL. Positions are derived from the attention mask (as HF ``generate``
                  does) so padded rows equal unpadded ones and the embeddings are comparable.
* ``vanilla``     tpembed, vanilla PromptEOL (length-sorted batches, early exit, prefix cache: defaults).
* ``tp``          tpembed, TP PromptEOL, TP before layers [--tp-start, --tp-exit).
* ``--ablations``  vanilla / TP without the prefix cache, and TP with an empty layer range (hook cost).
* ``<m>-cache`` / ``<m>-nocache``  tpembed vanilla with prompt method m (ke, metaeol), prefix cache on/off;
                  metaeol runs 8 prompts per sentence, so it gets --metaeol-limit sentences.

Example (2 CPU threads):
    python benchmarks/speed.py --model smollm2-135m --limit 400 --repeats 3 --threads 2 --out results/speed_smollm2.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tpembed import Encoder, load_model
from tpembed.evaluation import load_task
from tpembed.evaluation.pipeline import default_data_dir
from tpembed.memory import release_free_memory
from tpembed.models import load_causal_lm
from tpembed.prompts import PROMPTS, normalize_sentence, render

# ---------------------------------------------------------------------------------------------
# memory: peak RSS on CPU (Linux /proc, reset per variant), peak allocated on CUDA
# ---------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of one run: CUDA peak allocated, else peak RSS (VmHWM reset via clear_refs)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            return self
        release_free_memory()  # hand freed heap back to the OS so the baseline is honest
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.resettable = True
        except OSError:
            self.resettable = False
        self.before = (_status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = (_status_kib("VmHWM") or 0) * 1024 if self.resettable else float("nan")


# ---------------------------------------------------------------------------------------------
# the variants
# ---------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    sentences: list[str]
    run: Callable[[], np.ndarray]
    warmup: Callable[[], object]
    counter: torch.nn.Module  # first decoder layer: counts the token positions actually computed
    prompt_tokens: int = 0
    times: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    delta_mib: list[float] = field(default_factory=list)
    computed_tokens: int = 0
    embeddings: np.ndarray | None = None


def reference_embed(model, tokenizer, sentences: list[str], output_layer: int, batch_size: int) -> np.ndarray:
    """The paper's way: full causal LM, output_hidden_states=True, input order, left padding."""
    template = PROMPTS["prompteol"].templates[0]
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(sentences), batch_size):
            texts = [render(template, normalize_sentence(s), use_placeholder=False).text for s in sentences[i : i + batch_size]]
            batch = tokenizer(texts, padding=True, return_tensors="pt").to(device)
            # generate()'s positions: count real tokens, so left padding does not shift them
            position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            output = model(**batch, position_ids=position_ids, output_hidden_states=True)
            out.append(output.hidden_states[output_layer][:, -1].float().cpu().numpy())
    return np.concatenate(out)


def count_tokens(layer: torch.nn.Module, fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    """Run fn once, summing rows x width of every input of ``layer`` (padding included)."""
    total = 0

    def hook(module, args, kwargs):
        nonlocal total
        hidden = args[0] if args else kwargs["hidden_states"]
        total += hidden.shape[0] * hidden.shape[1]

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        result = fn()
    finally:
        handle.remove()
    return result, total


def prompt_token_count(enc: Encoder, sentences: list[str]) -> int:
    """Real (unpadded) tokens of every prompt the encoder builds, all templates."""
    unique = list(dict.fromkeys(normalize_sentence(s) for s in sentences))
    return sum(len(p.ids) for group in enc._tokenize_all(unique) for p in group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=None, help="SentEval folder (default: $TPEMBED_DATA or ../shared/senteval)")
    parser.add_argument("--limit", type=int, default=None, help="first N distinct STS-B test sentences (2551 in all)")
    parser.add_argument("--metaeol-limit", type=int, default=None, help="sentences for metaeol (default: limit // 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output-layer", type=int, default=-1)
    parser.add_argument("--tp-start", type=int, default=1)
    parser.add_argument("--tp-exit", type=int, default=4)
    parser.add_argument("--methods", nargs="*", default=["ke", "metaeol"], choices=["ke", "metaeol", "cot", "prompteol"],
                        help="prompt methods timed with and without the prefix cache")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--ablations", action="store_true",
                        help="also vanilla/TP without the prefix cache and TP with an empty layer range (hook cost)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_task("STSBenchmark", args.data or default_data_dir())
    sentences = list(dict.fromkeys(data.sentences()))  # distinct, so every variant does the same work
    sentences = sentences[: args.limit] if args.limit else sentences
    meta_sentences = sentences[: args.metaeol_limit or max(len(sentences) // 8, 1)]

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    device = loaded.device
    common = dict(output_layer=args.output_layer, batch_size=args.batch_size)
    first = loaded.layers[0]

    def tpembed(enc: Encoder, items: list[str]) -> Callable[[], np.ndarray]:
        return lambda: enc.encode(items, show_progress_bar=False)

    warm = sentences[: 2 * args.batch_size]

    variants: list[Variant] = []
    if not args.skip_reference:
        causal_lm, ref_tok = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
        ref_tok.padding_side = "left"
        if ref_tok.pad_token is None:
            ref_tok.pad_token = ref_tok.eos_token
        ref_layer = causal_lm.get_decoder().layers[0]
        ref = Variant("reference", sentences,
                      lambda: reference_embed(causal_lm, ref_tok, sentences, args.output_layer, args.batch_size),
                      lambda: reference_embed(causal_lm, ref_tok, warm, args.output_layer, args.batch_size), ref_layer)
        variants.append(ref)
    vanilla = Encoder(loaded, use_which_plan="vanilla", **common)
    tp = Encoder(loaded, use_which_plan="tp", tp_starting_index=args.tp_start, tp_exiting_index=args.tp_exit, **common)
    variants += [Variant("vanilla", sentences, tpembed(vanilla, sentences), tpembed(vanilla, warm), first),
                 Variant("tp", sentences, tpembed(tp, sentences), tpembed(tp, warm), first)]
    encoders = {"vanilla": vanilla, "tp": tp}
    if args.ablations:
        encoders["vanilla-nocache"] = Encoder(loaded, use_which_plan="vanilla", prefix_cache=False, **common)
        encoders["tp-nocache"] = Encoder(loaded, use_which_plan="tp", tp_starting_index=args.tp_start,
                                         tp_exiting_index=args.tp_exit, prefix_cache=False, **common)
        encoders["tp-empty-range"] = Encoder(loaded, use_which_plan="tp", tp_starting_index=args.tp_start,
                                             tp_exiting_index=args.tp_start, **common)
        variants += [Variant(name, sentences, tpembed(encoders[name], sentences), tpembed(encoders[name], warm), first)
                     for name in ("vanilla-nocache", "tp-nocache", "tp-empty-range")]
    for method in args.methods:
        items = meta_sentences if method == "metaeol" else sentences
        for cache in (True, False):
            name = f"{method}-{'cache' if cache else 'nocache'}"
            encoders[name] = Encoder(loaded, use_which_plan="vanilla", prompt_method=method, prefix_cache=cache, **common)
            variants.append(Variant(name, items, tpembed(encoders[name], items), tpembed(encoders[name], warm[:8]), first))
    for v in variants:
        if v.name in encoders:
            v.prompt_tokens = prompt_token_count(encoders[v.name], v.sentences)
    if not args.skip_reference:
        ref.prompt_tokens = prompt_token_count(vanilla, sentences)  # same strings, same tokenizer

    # warm-up on a few sentences (first calls allocate, pick kernels, ...)
    for v in variants:
        v.warmup()
    for r in range(args.repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            gc.collect()
            start = time.perf_counter()
            if r == 0:  # the first repeat also counts computed tokens and keeps the embeddings
                v.embeddings, v.computed_tokens = count_tokens(v.counter, v.run)
            else:
                v.run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            v.times.append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{v.name} {v.times[-1]:.2f}s" for v in variants), flush=True)
    # memory in a separate, untimed run per variant (trimming the heap would perturb the timings)
    for v in variants:
        with PeakMemory(device) as mem:
            v.run()
        v.peak_mib.append(mem.peak / 2**20)
        v.delta_mib.append((mem.peak - mem.before) / 2**20)

    by = {v.name: v for v in variants}
    med = {v.name: statistics.median(v.times) for v in variants}
    rows = {
        v.name: {
            "sentences": len(v.sentences),
            "median_s": med[v.name],
            "times_s": v.times,
            "sentences_per_s": len(v.sentences) / med[v.name],
            "prompt_tokens": v.prompt_tokens,
            "computed_tokens": v.computed_tokens,
            "peak_mib": max(v.peak_mib),
            "peak_over_baseline_mib": max(v.delta_mib),
        }
        for v in variants
    }
    ratios: dict[str, float] = {
        "tp_over_vanilla_time": med["tp"] / med["vanilla"],
        "tp_over_vanilla_prompt_tokens": by["tp"].prompt_tokens / by["vanilla"].prompt_tokens,
        "tp_over_vanilla_computed_tokens": by["tp"].computed_tokens / by["vanilla"].computed_tokens,
    }
    if args.ablations:
        ratios["tp_over_vanilla_time_nocache"] = med["tp-nocache"] / med["vanilla-nocache"]
        ratios["tp_over_vanilla_computed_tokens_nocache"] = by["tp-nocache"].computed_tokens / by["vanilla-nocache"].computed_tokens
        ratios["tp_empty_range_over_tp_time"] = med["tp-empty-range"] / med["tp"]
        ratios["vanilla_nocache_over_cache_time"] = med["vanilla-nocache"] / med["vanilla"]
    diffs: dict[str, float] = {}
    if "reference" in by:
        ratios["reference_over_vanilla_time"] = med["reference"] / med["vanilla"]
        diffs["reference_vs_vanilla"] = float(np.abs(by["reference"].embeddings - by["vanilla"].embeddings).max())
    for method in args.methods:
        a, b = by[f"{method}-nocache"], by[f"{method}-cache"]
        ratios[f"{method}_nocache_over_cache_time"] = med[a.name] / med[b.name]
        ratios[f"{method}_nocache_over_cache_computed_tokens"] = a.computed_tokens / b.computed_tokens
        diffs[f"{method}_cache_vs_nocache"] = float(np.abs(a.embeddings - b.embeddings).max())

    result = {
        "model": args.model,
        "identity": loaded.identity,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "memory": "peak allocated (CUDA)" if device.type == "cuda" else "peak RSS of the process (VmHWM, reset per run)",
        "variants": rows,
        "ratios": ratios,
        "max_abs_diff": diffs,
    }
    print(f"\n{args.model} on {device}, {torch.get_num_threads()} threads, output layer {args.output_layer}, "
          f"batch {args.batch_size}, {args.repeats} repeats (medians)")
    print("| variant | sentences | median s | sentences/s | prompt tokens | computed tokens | peak MiB | over baseline MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['sentences']} | {row['median_s']:.2f} | {row['sentences_per_s']:.1f} | "
              f"{row['prompt_tokens']} | {row['computed_tokens']} | {row['peak_mib']:.0f} | {row['peak_over_baseline_mib']:.0f} |")
    for key, value in {**ratios, **{f"max_abs_diff {k}": v for k, v in diffs.items()}}.items():
        print(f"{key}: {value:.4g}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
