"""The lever interface: what the Encoder asks of every training-free intervention.

A lever is built from the settings and the model's layer count (that is where it validates its
layers: one check, the same before loading and in the Encoder), is attached once to the loaded
model, may rewrite the prompt, may run work once per encode call (Contrastive Prompting's auxiliary
pass), installs hooks around each forward batch, and says what it adds to the identity. Every
phase is a no-op by default, so a lever implements only what it does. Subclasses register
themselves; ``enabled`` decides from the settings whether a lever takes part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..numbering import resolve_output_layer

if TYPE_CHECKING:
    from ..config import EncoderConfig
    from ..inputs import PromptTokens
    from ..models import LoadedModel
    from ..prompts import PromptMethod
    from .prefix_cache import PrefixState

#: Every lever class, in the order hooks are installed (``order``, then definition order).
REGISTRY: list[type[Lever]] = []


@dataclass
class Batch:
    """One forward batch as a lever sees it (left-padded: every row's last token is at -1)."""

    rows: list[int]  # the call's sentence numbers in this batch
    sentences: list[str]  # those sentences (normalised)
    template: str
    prompts: list[PromptTokens]
    inputs: dict[str, Any]  # model inputs (the suffix only when a prefix is cached)
    pst_index: torch.Tensor | None  # <PST> position per row in the inputs (TP)
    prefix_length: int  # leading tokens supplied by the cached prefix, not in the inputs
    call: Call


@dataclass
class Call:
    """One ``encode`` call: its distinct sentences and what levers compute for it (per call, never
    on the lever, so concurrent calls of one Encoder never share it)."""

    sentences: list[str]
    run_group: Callable[..., Any]  # the Encoder's batch loop, for levers with a pass of their own
    tokenize: Callable[[str, list[str]], list[PromptTokens]]
    progress: Any  # the call's progress bar (tqdm)
    state: dict[str, Any] = field(default_factory=dict)


class Lever:
    """One training-free intervention. Override only the phases the lever uses."""

    order: ClassVar[int] = 50  # hook installation order among active levers
    #: extra model forwards per sentence this lever adds (counted in progress and token usage)
    extra_templates: ClassVar[tuple[str, ...]] = ()
    #: True when prompts carry the <PST> placeholder (Token Prepending)
    uses_placeholder: ClassVar[bool] = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Register every concrete lever (``class X(Lever, abstract=True)`` for base classes)."""
        super().__init_subclass__(**kwargs)
        if not abstract:
            REGISTRY.append(cls)
            REGISTRY.sort(key=lambda c: c.order)  # stable: equal orders keep definition order

    @classmethod
    def enabled(cls, config: EncoderConfig) -> bool:
        """Whether these settings turn the lever on."""
        raise NotImplementedError

    def __init__(self, config: EncoderConfig, num_layers: int) -> None:
        """Keep the settings and check them against a model with ``num_layers`` decoder layers."""
        self.config = config
        self.num_layers = num_layers
        self.validate()

    def validate(self) -> None:
        """Raise ValueError (naming the value and the fix) for settings this model cannot run."""

    def identity(self) -> dict[str, Any]:
        """What this lever adds to the identity (keys of the embedding cache and friends)."""
        return {}

    def rewrite_prompt(self, method: PromptMethod) -> PromptMethod | list[PromptMethod]:
        """The prompt method with this lever's change (e.g. a demonstration before it); a list makes
        each one an ensemble member (averaged L2-normalised, as prompt ensembles are)."""
        return method

    def warning(self, first_output_index: int) -> str | None:
        """A warning for legal but almost surely mistaken settings, or None."""
        return None

    def attach(self, loaded: LoadedModel, hidden_size: int) -> None:
        """Once per Encoder, with the loaded model (find modules, add tokens). Runs under the model's lock."""

    def before_batches(self, call: Call, depth: int) -> None:
        """Once per encode call, before its batches (store results in ``call.state``)."""

    def prefix(self, template: str, prompts: list[PromptTokens], depth: int) -> PrefixState | None:
        """A cached shared prefix for this template's prompts (the prefix cache only)."""
        return None

    def batch_hooks(self, batch: Batch) -> AbstractContextManager[Any]:
        """Hooks for one forward batch; they must be removed when the block ends."""
        return nullcontext()

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Post-processing of the final vectors ``(rows, dim)`` of one output layer, after the ensemble
        mean (linear transforms commute with the mean over a layer list)."""
        return vectors


class Pooling(Lever, abstract=True):
    """How the states of one batch become vectors at the output layers; exactly one is active
    (``config.pooling``). It owns the output-layer check (layer lists are its layers)."""

    pooling: ClassVar[str]  # the value of config.pooling that selects it
    order = 90  # capture after every other lever's hooks (they may edit the states it reads)

    @classmethod
    def enabled(cls, config: EncoderConfig) -> bool:
        return config.pooling == cls.pooling

    def validate(self) -> None:
        self.output_indices = [resolve_output_layer(k, self.num_layers) for k in self.config.output_layers()]

    def identity(self) -> dict[str, Any]:
        return {} if self.pooling == "last_token" else {"pooling": self.pooling}

    @contextmanager
    def capture(self, batch: Batch, layers: list[torch.nn.Module], indices: list[int]) -> Iterator[dict[int, Any]]:
        """Install the hooks that collect what :meth:`read` needs while the batch runs."""
        raise NotImplementedError
        yield {}

    def read(self, captured: dict[int, Any], output: Any, batch: Batch, indices: list[int]) -> dict[int, torch.Tensor]:
        """``{k: (rows, dim)}`` for each HF index k; ``output`` is the model's output when layer L ran."""
        raise NotImplementedError
