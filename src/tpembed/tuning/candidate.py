"""The one candidate type of every tuner: a partial EncoderConfig, frozen, named by the config's own fields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..config import EncoderConfig, RunConfig, describe_demonstrations, searchable_settings

Plan = tuple[int, int] | None  # a TP range [start, exit); None = vanilla


def plan_settings(plan: Plan) -> dict[str, Any]:
    """A TP range as the three plan fields (vanilla keeps the indices at 0, as the paper's configs do)."""
    if plan is None:
        return {"use_which_plan": "vanilla", "tp_starting_index": 0, "tp_exiting_index": 0}
    return {"use_which_plan": "tp", "tp_starting_index": plan[0], "tp_exiting_index": plan[1]}


def _frozen(value: Any) -> Any:
    # lists (nested ones too: a demonstration ensemble of k-shot members) become tuples so a candidate
    # can key a dict; a list of one is that value, as in EncoderConfig
    if isinstance(value, (list, tuple)):
        return _frozen(value[0]) if len(value) == 1 else tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


class Candidate(Mapping[str, Any]):
    """Settings a tuner tries: EncoderConfig fields that :func:`~tpembed.config.searchable_settings` lists.

    Immutable and hashable; equal settings are equal candidates in any order, while iteration keeps
    the order given (the order ``settings()`` and search.json show them in).
    """

    __slots__ = ("_items", "_hash")

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        items = {**(settings or {}), **more}
        unknown = sorted(set(items) - set(searchable_settings()))
        if unknown:
            raise ValueError(
                f"candidate settings {unknown} are not searchable EncoderConfig fields; "
                f"use {', '.join(searchable_settings())}"
            )
        self._items = {key: _frozen(value) for key, value in items.items()}
        self._hash = hash(frozenset(self._items.items()))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Candidate({self._items!r})"

    def replace(self, **changes: Any) -> Candidate:
        """A copy with ``changes`` applied (changed fields keep their place)."""
        return Candidate({**self._items, **changes})

    def as_list(self, key: str) -> list[Any]:
        """A field that may hold several values (prompt_method, output_layer) as a list."""
        value = self._items[key]
        return list(value) if isinstance(value, tuple) else [value]

    def settings(self) -> dict[str, Any]:
        """The candidate as EncoderConfig keyword arguments (ensembles and layer lists as lists)."""
        return {key: _thawed(value) for key, value in self._items.items()}

    def config(self, base: Mapping[str, Any]) -> EncoderConfig:
        """The candidate on top of ``base`` (the settings no tuner varies), validated."""
        return EncoderConfig(**{**base, **self.settings()})

    def run_config(self, base: Mapping[str, Any]) -> RunConfig:
        """The candidate on top of ``base`` as a RunConfig for the 7 STS test tasks."""
        return RunConfig(**{**base, **self.settings(), "mode": "test", "task_set": "sts"})

    def _value(self, key: str) -> Any:
        """The field's value here, else EncoderConfig's default."""
        return self._items[key] if key in self._items else EncoderConfig.model_fields[key].default

    def label(self) -> str:
        """A short human-readable description of the fields it sets."""
        get = self._value
        parts = []
        demo = describe_demonstrations(EncoderConfig(demonstration=_thawed(get("demonstration")),
                                                     demo_ensemble=_thawed(get("demo_ensemble"))))
        demo = f"({demo})" if demo else ""
        if "prompt_method" in self:
            parts.append(" ".join(filter(None, ["+".join(map(str, self.as_list("prompt_method"))), demo])))
        elif demo:
            parts.append(demo)
        if "use_which_plan" in self:
            tp = f"TP[{get('tp_starting_index')},{get('tp_exiting_index')})"
            parts.append("vanilla" if get("use_which_plan") == "vanilla" else tp)
        if "cp_layer" in self:
            parts.append("CP off" if get("cp_layer") is None else f"CP@{get('cp_layer')}x{get('cp_alpha'):g}")
        if get("pooling") != "last_token":
            parts.append(str(get("pooling")))
        if get("embed_filter") is not None:
            parts.append(f"EmbedFilter 1/{get('embed_filter'):g}")
        if "output_layer" in self:
            parts.append(f"layers {','.join(map(str, self.as_list('output_layer')))}")
        return " | ".join(parts)
