"""What coordinate ascent may try: the options of each axis, as EncoderConfig settings, and their parsers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import EncoderConfig
from ..prompts import demonstration_shots
from .candidate import Candidate, Plan, plan_settings
from .layers import check_output_layers, refusal

# the axes in the order a round visits them; the names are the columns of search's grid.csv
AXES = ("prompts", "demo", "tp", "cp_layer", "cp_alpha", "pooling", "layers", "filter")
_FIELD = {"prompts": "prompt_method", "cp_layer": "cp_layer", "cp_alpha": "cp_alpha",
          "pooling": "pooling", "layers": "output_layer", "filter": "embed_filter"}  # "tp": the plan fields
_TITLE = {"prompts": "prompt options", "demo": "demonstration options", "tp": "TP options",
          "cp_layer": "CP layers", "cp_alpha": "CP alpha options", "pooling": "pooling options",
          "filter": "EmbedFilter options"}


@dataclass(frozen=True)
class DemoEnsemble:
    """A demonstration option that is an ensemble: its members (each a name or a k-shot tuple)."""

    members: tuple[str | tuple[str, ...], ...]


Demo = str | tuple[str, ...] | DemoEnsemble | None  # off, one shot, k shots, an ensemble


def axis_settings(axis: str, value: Any) -> dict[str, Any]:
    """One option of ``axis`` as the EncoderConfig fields it sets."""
    if axis == "tp":
        return plan_settings(value)
    if axis == "demo":  # both demonstration fields, so an option replaces whichever the current one set
        if isinstance(value, DemoEnsemble):
            return {"demonstration": None, "demo_ensemble": [list(m) if isinstance(m, tuple) else m for m in value.members]}
        return {"demonstration": list(value) if isinstance(value, tuple) else value, "demo_ensemble": None}
    if axis not in _FIELD:
        raise ValueError(f"unknown axis {axis!r}; the axes are {', '.join(AXES)}")
    return {_FIELD[axis]: value}


@dataclass
class SearchSpace:
    """The options of each axis; the first option of each is the starting point."""

    prompts: list[tuple[str, ...]] = field(default_factory=lambda: [("prompteol",)])
    tp: list[Plan] = field(default_factory=lambda: [None])
    cp_layers: list[int | None] = field(default_factory=lambda: [None])
    cp_alphas: list[float] = field(default_factory=lambda: [1.0])
    cp_mode: str = "ns"
    poolings: list[str] = field(default_factory=lambda: ["last_token"])
    demos: list[Demo] = field(default_factory=lambda: [None])
    filters: list[float | None] = field(default_factory=lambda: [None])  # EmbedFilter ratios (None: off)
    outputs: list[int] = field(default_factory=list)  # candidate single output layers (default: upper half)
    max_window: int = 1  # layer options: every run of 1..max_window consecutive candidate layers

    def layer_options(self) -> list[tuple[int, ...]]:
        """Single layers and windows of consecutive layers, all from the same rows."""
        out = []
        for width in range(1, self.max_window + 1):
            for i in range(len(self.outputs) - width + 1):
                window = tuple(self.outputs[i : i + width])
                if window[-1] - window[0] == width - 1:
                    out.append(window)
        return out

    def values(self, axis: str) -> list[Any]:
        """Every option of ``axis`` as given."""
        by_axis = {"prompts": self.prompts, "demo": self.demos, "tp": self.tp, "cp_layer": self.cp_layers,
                   "cp_alpha": self.cp_alphas, "pooling": self.poolings, "filter": self.filters}
        return self.layer_options() if axis == "layers" else list(by_axis[axis])

    def options(self, axis: str, current: Candidate) -> list[dict[str, Any]]:
        """What ``axis`` may set from ``current``, as settings (CP alpha only matters while CP is on)."""
        if axis == "cp_alpha" and current["cp_layer"] is None:
            return []
        return [axis_settings(axis, value) for value in self.values(axis)]

    def start(self) -> Candidate:
        """The first option of every axis, read at the last candidate output layer."""
        return Candidate(
            prompt_method=self.prompts[0], **plan_settings(self.tp[0]), output_layer=self.outputs[-1],
            cp_layer=self.cp_layers[0], cp_alpha=self.cp_alphas[0], cp_mode=self.cp_mode,
            pooling=self.poolings[0], **axis_settings("demo", self.demos[0]), embed_filter=self.filters[0],
        )


def check_space(space: SearchSpace, num_layers: int, model: str = "the model") -> None:
    """Clear errors for options ``model`` (with ``num_layers`` decoder layers) cannot run, before any pass."""
    if space.max_window < 1:
        raise ValueError("max_window must be >= 1")
    check_output_layers(space.outputs, num_layers)
    EncoderConfig(cp_mode=space.cp_mode)  # a clear error for a bad one
    for axis, title in _TITLE.items():
        reasons = {repr(v): refusal(Candidate(axis_settings(axis, v)), num_layers, model) for v in space.values(axis)}
        bad = {v: why for v, why in reasons.items() if why}
        if bad:
            raise ValueError(f"{title} [{', '.join(bad)}]: {next(iter(bad.values()))}")


def parse_prompt_options(text: str) -> list[tuple[str, ...]]:
    """``"prompteol,cot,ke,cot+ke"`` -> ``[("prompteol",), ("cot",), ("ke",), ("cot", "ke")]`` (checked)."""
    out = []
    for part in text.split(","):
        members = tuple(m.strip() for m in part.split("+") if m.strip())
        if members:
            EncoderConfig(prompt_method=list(members))  # a clear error for an unknown name
            out.append(members)
    if not out:
        raise ValueError(f"no prompt options in {text!r}")
    return out


def parse_tp_options(text: str) -> list[Plan]:
    """``"vanilla,1-2,1-3"`` -> ``[None, (1, 2), (1, 3)]`` (TP before decoder layers [start, exit))."""
    out: list[Plan] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part in ("vanilla", "off", "none"):
            out.append(None)
            continue
        try:
            start, exit_layer = (int(x) for x in part.split("-"))
        except ValueError:
            raise ValueError(f"TP option {part!r}: use vanilla or START-EXIT, e.g. 1-2") from None
        if not 0 <= start < exit_layer:
            raise ValueError(f"TP option {part!r}: need 0 <= START < EXIT")
        out.append((start, exit_layer))
    if not out:
        raise ValueError(f"no TP options in {text!r}")
    return out


def _parse_optional(text: str, convert: type, what: str, hint: str) -> list[Any]:
    """``"off,2,4"`` -> ``[None, convert("2"), convert("4")]`` (off or none: the lever off)."""
    out: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("off", "none"):
            out.append(None)
        elif part:
            try:
                out.append(convert(part))
            except ValueError:
                raise ValueError(f"{what} {part!r}: use off or {hint}") from None
    if not out:
        raise ValueError(f"no {what} options in {text!r}")
    return out


def parse_cp_layers(text: str) -> list[int | None]:
    """``"off,2,4"`` -> ``[None, 2, 4]`` (decoder layers, 0-based)."""
    return _parse_optional(text, int, "CP layer", "a decoder layer number")


def parse_floats(text: str) -> list[float]:
    """``"0.5,1"`` -> ``[0.5, 1.0]``."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"cannot read numbers from {text!r}") from None
    if not values:
        raise ValueError(f"no values in {text!r}")
    return values


def parse_demos(text: str) -> list[Demo]:
    """``"none,storm,storm+jockey,storm|jockey+chef"`` -> ``[None, "storm", ("storm", "jockey"),
    DemoEnsemble(("storm", ("jockey", "chef")))]``: ``,`` between options, ``+`` joins the shots of a
    k-shot demonstration, ``|`` the members of an ensemble (none or off: no demonstration). Checked."""

    def shots(part: str) -> str | tuple[str, ...]:
        names = tuple(demonstration_shots(part.strip()))
        return names[0] if len(names) == 1 else names

    out: list[Demo] = []
    for option in (p.strip() for p in text.split(",")):
        if not option:
            continue
        if option in ("none", "off"):
            out.append(None)
            continue
        members = [shots(m) for m in option.split("|") if m.strip()]
        value: Demo = DemoEnsemble(tuple(members)) if len(members) > 1 else members[0]
        EncoderConfig(**axis_settings("demo", value))  # a clear error for an unknown name or a bad ensemble
        out.append(value)
    if not out:
        raise ValueError(f"no demonstration options in {text!r}")
    return out


def parse_filters(text: str) -> list[float | None]:
    """``"off,1.2,2"`` -> ``[None, 1.2, 2.0]`` (EmbedFilter ratios: keep hidden / ratio directions)."""
    out = _parse_optional(text, float, "EmbedFilter", "a ratio above 1, e.g. 1.2")
    for ratio in out:
        EncoderConfig(embed_filter=ratio)  # a clear error for a ratio <= 1
    return out
