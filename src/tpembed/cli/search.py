"""``tpembed search``: coordinate ascent over prompt / ensemble, TP, Contrastive Prompting and output layers on STS-B dev."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app
from ._common import check_output_folder, config_source, user_errors
from .evaluate import CacheOption, DataOption, LimitOption, QuietOption

# the fields the search varies, each from its own list option (--prompts, --tp, ...); cp_mode is one value
SEARCHED = ("prompt_method", "demonstration", "demo_ensemble", "use_which_plan", "tp_starting_index",
            "tp_exiting_index", "cp_layer", "cp_alpha", "pooling", "output_layer", "embed_filter")


@app.command()
@config_source("one", quick_layer_check=False, exclude=SEARCHED)
def search(
    prompts: Annotated[
        str, typer.Option("--prompts", help="prompt options, ',' between options, '+' inside an ensemble")
    ] = "prompteol,cot,ke,cot+ke",
    tp: Annotated[str, typer.Option("--tp", help="TP options: vanilla or START-EXIT, e.g. vanilla,1-2,1-3")] = "vanilla,1-2",
    cp_layers: Annotated[
        str, typer.Option("--cp-layers", help="Contrastive Prompting layers (0-based decoder layers) or off")
    ] = "off",
    cp_alphas: Annotated[str, typer.Option("--cp-alphas", help="CP alpha options, e.g. 0.5,1")] = "1",
    demos: Annotated[
        str,
        typer.Option(
            "--demos",
            help="demonstration options: none, built-in names (tpembed configs --demos), '+' joins the shots of a "
            "k-shot option, '|' the members of an ensemble: none,storm,storm+jockey,storm|jockey|chef",
        ),
    ] = "none",
    filters: Annotated[
        str, typer.Option("--filters", help="EmbedFilter options: off and/or ratios above 1, e.g. off,1.2,1.5,2")
    ] = "off",
    poolings: Annotated[
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
    adopt_if_ci: Annotated[
        bool,
        typer.Option(
            "--adopt-if-ci-above-zero",
            help="adopt a change only when its dev gain's 95% paired bootstrap CI lies above 0 (default: any gain)",
        ),
    ] = False,
    ci_resamples: Annotated[
        int, typer.Option("--ci-resamples", min=1, help="bootstrap resamples for each step's gain CI")
    ] = 1000,
    ablate: Annotated[bool, typer.Option("--ablate", help="also score the recipe minus each lever, and time it")] = False,
    time_sentences: Annotated[int, typer.Option("--time-sentences", min=1, help="sentences for the time ratio")] = 256,
    out: Annotated[Path, typer.Option("--out", help="folder for grid.csv, ranked.csv, search.json, best.yaml")] = Path(
        "search"
    ),
    name: Annotated[Optional[str], typer.Option("--name", help="entry name prefix in best.yaml")] = None,
    data: DataOption = None,
    limit: LimitOption = None,
    cache: CacheOption = True,
    quiet: QuietOption = False,
    run_config: Any = None,
) -> None:
    """Search the recipe on STS-B dev (never a test set); write grid.csv, ranked.csv, search.json, best.yaml.

    The search varies the prompt, demonstration (one, k-shot or an ensemble), TP plan, CP layer and
    alpha, pooling, output layers and EmbedFilter from the options above (--cp-mode picks CP's mode); every other setting is the config's.
    """
    from ..evaluation import ensure_senteval, tasks_for

    with user_errors():
        check_output_folder(out, "grid.csv")
        from ..tuning import (SearchSpace, parse_cp_layers, parse_demos, parse_filters, parse_floats, parse_layers,
                              parse_prompt_options, parse_tp_options)

        config = run_config.encoder_config()
        space = SearchSpace(
            prompts=parse_prompt_options(prompts),
            tp=parse_tp_options(tp),
            cp_layers=parse_cp_layers(cp_layers),
            cp_alphas=parse_floats(cp_alphas),
            cp_mode=config.cp_mode,
            poolings=[p.strip() for p in poolings.split(",") if p.strip()],
            demos=parse_demos(demos),
            filters=parse_filters(filters),
            outputs=parse_layers(outputs) if outputs else [],
            max_window=max_window,
        )
        data = ensure_senteval(data, tasks_for("stsb", "dev"), progress=not quiet)
        from ..tuning import (DevScorer, ablation, dev_pairs, format_ranked, load_for_search, run_search, time_ratio,
                              write_outputs)

        loaded = load_for_search(config, space, progress=not quiet)
        settings = config.model_dump(exclude={"model", "cp_mode", *SEARCHED})
        result = run_search(loaded, space, data_dir=data, rounds=rounds, limit=limit, subsample=subsample,
                            use_cache=cache, progress=not quiet, require_ci=adopt_if_ci, ci_resamples=ci_resamples,
                            **settings)
        paths = write_outputs(result, out, name)
    typer.echo(format_ranked(result))
    typer.echo(
        f"best on STS-B dev ({result.n_pairs} pairs): {result.best_score:.2f}  {result.best.label()}\n"
        f"{len(result.evaluations)} evaluations, {result.rows_encoded} rows encoded over {result.n_sentences} "
        f"sentences (the rest from memory or the cache); {result.seconds:.1f} s\n"
        f"{_adoptions(result)}\n"
        f"wrote {', '.join(str(p) for p in paths.values())}"
    )
    if ablate:
        with user_errors():
            # vanilla's "last layer" row is the model's last layer even when --outputs stops short of it
            with_last = sorted({*result.space.outputs, loaded.num_layers})
            scorer = DevScorer(loaded, dev_pairs(data, limit, subsample), with_last, result.base_settings,
                               use_cache=cache, progress=not quiet)
            rows = ablation(scorer, result.best, result.space.outputs)
            recipe = result.run_config().encoder_config().model_dump()
            median, ratios = time_ratio(loaded, recipe, scorer.sentences[:time_sentences])
        lines = ["| configuration | STS-B dev | vs recipe |", "|---|---|---|"]
        lines += [f"| {label}: {_cell(c.label())} | {s:.2f} | {s - rows[0][2]:+.2f} |" for label, c, s in rows]
        lines.append(f"time ratio recipe / vanilla PromptEOL (final layer): {median:.2f}x "
                     f"(repeats: {', '.join(f'{r:.2f}' for r in ratios)})")
        (out / "ablation.md").write_text("\n".join(lines) + "\n")
        typer.echo("\n".join(lines))


def _adoptions(result: Any) -> str:
    """One line: how many changes were adopted, and (with the CI rule) how many better scores it refused."""
    steps = [e for e in result.evaluations if e.gain is not None]
    adopted = sum(e.adopted for e in steps)
    refused = sum(1 for e in steps if e.gain > 0 and not e.adopted)
    rule = ("only gains whose 95% CI is above 0" if result.require_ci else "any gain")
    line = f"adopted {adopted} change(s) ({rule})"
    if result.require_ci:
        line += f"; refused {refused} higher-scoring change(s) whose CI includes 0"
    return line + "; gains and CIs in grid.csv"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")
