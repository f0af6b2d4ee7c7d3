"""What a tuned recipe owes each lever (ablation on STS-B dev) and what it costs in encode time."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import EncoderConfig
from ..encoder import Encoder
from ..prompts import demonstration_text
from ..models import LoadedModel
from .candidate import Candidate, plan_settings
from .scorer import DevScorer


def ablation(scorer: DevScorer, recipe: Candidate, vanilla_layers: Sequence[int]) -> list[tuple[str, Candidate, float]]:
    """The recipe, the recipe minus each lever it uses, and vanilla PromptEOL at the model's last layer
    and at its dev-best layer among ``vanilla_layers`` and the last one.

    ``scorer.outputs`` must hold every layer scored here (its rows are encoded at those layers)."""
    last_layer = scorer.loaded.num_layers
    missing = sorted((set(recipe.as_list("output_layer")) | set(vanilla_layers) | {last_layer}) - set(scorer.outputs))
    if missing:
        raise ValueError(f"the scorer's output layers {scorer.outputs} lack {missing}")
    rows: list[tuple[str, Candidate]] = [("recipe", recipe)]
    prompts, layers = recipe.as_list("prompt_method"), recipe.as_list("output_layer")
    if len(prompts) > 1:
        rows += [(f"- ensemble (only {m})", recipe.replace(prompt_method=m)) for m in prompts]
    if recipe.get("use_which_plan") == "tp":
        rows.append(("- TP (vanilla plan)", recipe.replace(**plan_settings(None))))
    if recipe.get("cp_layer") is not None:
        rows.append(("- CP", recipe.replace(cp_layer=None)))
    demonstration, members = recipe.get("demonstration"), recipe.get("demo_ensemble")
    if isinstance(demonstration, tuple):  # k-shot: each shot alone
        rows += [(f"- k-shot (only {shot})", recipe.replace(demonstration=shot)) for shot in demonstration]
    if members is not None:
        rows += [(f"- demonstration ensemble (only {demonstration_text(m)})",
                  recipe.replace(demonstration=m, demo_ensemble=None)) for m in members]
    if demonstration is not None or members is not None:
        rows.append(("- demonstration (0-shot)", recipe.replace(demonstration=None, demo_ensemble=None)))
    if recipe.get("embed_filter") is not None:
        rows.append(("- EmbedFilter", recipe.replace(embed_filter=None)))
    if recipe.get("pooling", "last_token") != "last_token":
        rows.append(("- attention sum (last-token state)", recipe.replace(pooling="last_token")))
    if len(layers) > 1:
        rows += [(f"- layer window (only {k})", recipe.replace(output_layer=k)) for k in layers]
    plain = recipe.replace(prompt_method="prompteol", **plan_settings(None), output_layer=last_layer, cp_layer=None,
                           pooling="last_token", demonstration=None, demo_ensemble=None, embed_filter=None)
    rows.append((f"vanilla PromptEOL, last layer {last_layer}", plain))
    best_layer = max(sorted(set(vanilla_layers) | {last_layer}),
                     key=lambda k: scorer.score(plain.replace(output_layer=k)))
    rows.append((f"vanilla PromptEOL, dev-best layer {best_layer}", plain.replace(output_layer=best_layer)))
    return [(label, c, scorer.score(c)) for label, c in rows]


def time_ratio(
    loaded: LoadedModel, recipe: Mapping[str, Any], sentences: Sequence[str], repeats: int = 3
) -> tuple[float, list[float]]:
    """Encode time of the recipe / vanilla PromptEOL at the final layer, interleaved; (median, per-repeat ratios)."""
    vanilla = Encoder(loaded, use_which_plan="vanilla", output_layer=-1, prompt_method="prompteol")
    tuned = Encoder(loaded, config=EncoderConfig(**recipe))
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vanilla.encode(list(sentences), show_progress_bar=False)
        t1 = time.perf_counter()
        tuned.encode(list(sentences), show_progress_bar=False)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return float(np.median(ratios)), ratios
