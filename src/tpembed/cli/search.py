"""``tpembed search``: coordinate ascent over prompt / ensemble, TP, Contrastive Prompting and output layers on STS-B dev."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app
from ._common import check_output_folder, user_errors
from .evaluate import CacheOption, DataOption, LimitOption, QuietOption


@app.command()
def search(
    model: Annotated[str, typer.Option("--model", help="packaged name, .gguf file, HF folder or hub id")] = "smollm2-135m",
    prompts: Annotated[
        str, typer.Option("--prompts", help="prompt options, ',' between options, '+' inside an ensemble")
    ] = "prompteol,cot,ke,cot+ke",
    tp: Annotated[str, typer.Option("--tp", help="TP options: vanilla or START-EXIT, e.g. vanilla,1-2,1-3")] = "vanilla,1-2",
    cp_layers: Annotated[
        str, typer.Option("--cp-layers", help="Contrastive Prompting layers (0-based decoder layers) or off")
    ] = "off",
    cp_alphas: Annotated[str, typer.Option("--cp-alphas", help="CP alpha options, e.g. 0.5,1")] = "1",
    cp_mode: Annotated[str, typer.Option("--cp-mode", help="ns | nr")] = "ns",
    demos: Annotated[
        str, typer.Option("--demos", help="one-shot demonstration options: none and/or built-in names (jockey,chef,...)")
    ] = "none",
    pooling: Annotated[
        str, typer.Option("--pooling", help="pooling options: last_token, attention_sum (comma-separated)")
    ] = "last_token",
    outputs: Annotated[
        Optional[str], typer.Option("--outputs", help="candidate output layers, a..b or a,b,c (default: upper half)")
    ] = None,
    max_window: Annotated[int, typer.Option("--max-window", min=1, help="also try means of up to N consecutive layers")] = 1,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="coordinate-ascent rounds (stops early when stable)")] = 2,
    subsample: Annotated[
        Optional[int], typer.Option("--subsample", min=2, help="score on N evenly spaced dev pairs (early looks)")
    ] = None,
    ablate: Annotated[bool, typer.Option("--ablate", help="also score the recipe minus each lever, and time it")] = False,
    time_sentences: Annotated[int, typer.Option("--time-sentences", min=1, help="sentences for the time ratio")] = 256,
    out: Annotated[Path, typer.Option("--out", help="folder for grid.csv, ranked.csv, search.json, best.yaml")] = Path(
        "search"
    ),
    name: Annotated[Optional[str], typer.Option("--name", help="entry name prefix in best.yaml")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="sentences per forward pass")] = 32,
    data: DataOption = None,
    limit: LimitOption = None,
    cache: CacheOption = True,
    quiet: QuietOption = False,
) -> None:
    """Search the recipe on STS-B dev (never a test set); write grid.csv, ranked.csv, search.json, best.yaml."""
    from ..evaluation import ensure_senteval, tasks_for

    with user_errors():
        check_output_folder(out, "grid.csv")
        from ..search import (SearchSpace, parse_cp_layers, parse_floats, parse_prompt_options, parse_tp_options)
        from ..sweep import parse_layers

        space = SearchSpace(
            prompts=parse_prompt_options(prompts),
            tp=parse_tp_options(tp),
            cp_layers=parse_cp_layers(cp_layers),
            cp_alphas=parse_floats(cp_alphas),
            cp_mode=cp_mode,
            poolings=[p.strip() for p in pooling.split(",") if p.strip()],
            demos=[None if d.strip() in ("none", "off") else d.strip() for d in demos.split(",") if d.strip()],
            max_window=max_window,
        )
        if cp_mode not in ("ns", "nr"):
            raise ValueError(f"--cp-mode must be ns or nr, got {cp_mode!r}")
        data = ensure_senteval(data, tasks_for("stsb", "dev"), progress=not quiet)
        from ..models import load_model_with_progress, model_num_layers
        from ..search import ablation, check_space, format_ranked, run_search, time_ratio, write_outputs

        known = model_num_layers(model)
        output_layers = parse_layers(outputs) if outputs else None
        if known is not None:
            space.outputs = _outputs(output_layers, known)
            check_space(space, known)
        loaded = load_model_with_progress(model, progress=not quiet)
        space.outputs = _outputs(output_layers, loaded.num_layers)
        result = run_search(loaded, space, data_dir=data, rounds=rounds, limit=limit, subsample=subsample,
                            use_cache=cache, progress=not quiet, batch_size=batch_size)
        paths = write_outputs(result, out, name)
    typer.echo(format_ranked(result))
    typer.echo(
        f"best on STS-B dev ({result.n_pairs} pairs): {result.best_score:.2f}  {result.best.label()}\n"
        f"{len(result.evaluations)} evaluations, {result.rows_encoded} rows encoded over {result.n_sentences} "
        f"sentences (the rest from memory or the cache); {result.seconds:.1f} s\n"
        f"wrote {', '.join(str(p) for p in paths.values())}"
    )
    if ablate:
        with user_errors():
            from ..search import DevScorer, dev_pairs

            # vanilla's "last layer" row is the model's last layer even when --outputs stops short of it
            with_last = dataclasses.replace(space, outputs=sorted({*space.outputs, loaded.num_layers}))
            scorer = DevScorer(loaded, dev_pairs(data, limit, subsample), with_last, result.base_settings,
                               use_cache=cache, progress=not quiet)
            rows = ablation(scorer, result.best, space.outputs)
            recipe = result.run_config().encoder_config().model_dump()
            median, ratios = time_ratio(loaded, recipe, scorer.sentences[:time_sentences])
        lines = ["| configuration | STS-B dev | vs recipe |", "|---|---|---|"]
        lines += [f"| {label}: {_cell(c.label())} | {s:.2f} | {s - rows[0][2]:+.2f} |" for label, c, s in rows]
        lines.append(f"time ratio recipe / vanilla PromptEOL (final layer): {median:.2f}x "
                     f"(repeats: {', '.join(f'{r:.2f}' for r in ratios)})")
        (out / "ablation.md").write_text("\n".join(lines) + "\n")
        typer.echo("\n".join(lines))


def _outputs(layers: list[int] | None, num_layers: int) -> list[int]:
    """Candidate output layers: negatives count from the end; default the upper half."""
    if not layers:
        return list(range((num_layers + 1) // 2, num_layers + 1))
    return sorted({k + num_layers + 1 if k < 0 else k for k in layers})


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")
