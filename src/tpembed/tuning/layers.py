"""Layer numbers for the tuners: ``a..b`` parsing, the default output layers, and what a model refuses."""

from __future__ import annotations

from collections.abc import Sequence

from ..levers import check_layers
from .candidate import Candidate, plan_settings

#: settings any model runs: :func:`refusal` judges a candidate's own fields on top of them
ANY_MODEL = Candidate(plan_settings(None), output_layer=-1, cp_layer=None)


def parse_layers(text: str) -> list[int]:
    """``"a..b"`` (inclusive), ``"a,b,c"`` or ``"a"`` -> sorted distinct layer numbers."""
    values: set[int] = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if ".." in part:
                low, high = (int(x) for x in part.split(".."))
                if high < low:
                    raise ValueError(f"empty range {part!r}: the end must be >= the start")
                values.update(range(low, high + 1))
            elif part:
                values.add(int(part))
    except ValueError as err:
        if "empty range" in str(err):
            raise
        raise ValueError(f"cannot read layers {text!r}: use a..b (inclusive), a,b,c or a single number") from None
    if not values:
        raise ValueError(f"no layers in {text!r}")
    return sorted(values)


def output_layers(requested: Sequence[int] | None, num_layers: int) -> list[int]:
    """The candidate output layers, each once, negatives counted from the end; default the upper half
    of the layers (the paper exits at 27/32 or at -2)."""
    if not requested:
        return list(range((num_layers + 1) // 2, num_layers + 1))
    return sorted({k + num_layers + 1 if -num_layers <= k < 0 else k for k in requested})


def refusal(candidate: Candidate, num_layers: int, model: str = "the model") -> str | None:
    """Why ``model`` with ``num_layers`` decoder layers cannot run ``candidate`` (its config's validation
    or :func:`~tpembed.levers.check_layers`), or None when it can."""
    try:
        check_layers(ANY_MODEL.replace(**candidate).config({"model": model}), num_layers)
    except ValueError as err:  # pydantic's ValidationError is a ValueError too
        return str(err)
    return None


def check_output_layers(outputs: Sequence[int], num_layers: int) -> None:
    """Clear error for output layers a tuner cannot score."""
    # 0 (the embeddings) is the same for every sentence; negatives were counted from the end already
    bad = [k for k in outputs if k < 1 or refusal(Candidate(output_layer=k), num_layers)]
    if not outputs or bad:
        raise ValueError(
            f"output layers {bad or list(outputs)} are out of range: use 1..{num_layers} or -{num_layers}..-1 "
            f"(HF hidden_states numbering, {num_layers} = -1 = final normed output; 0, the embeddings, "
            "is the same for every sentence)"
        )
