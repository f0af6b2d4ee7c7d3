"""A one-shot demonstration before every prompt (``demonstration``: a built-in name or
'SENTENCE => WORD'); the demonstrations themselves are data in :mod:`tpembed.prompts`.

It changes only the prompt text, and the prompt text is in the identity, so it adds no key of its
own. With the prefix cache the demonstration is part of the shared prefix: it costs one row per call.
"""

from __future__ import annotations

from typing import Any

from ..prompts import PromptMethod, demonstration_prefix, with_demonstration
from .base import Lever


class Demonstration(Lever):
    """``demonstration``: prepend one solved example to every template."""

    order = 30

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config.demonstration is not None

    def validate(self) -> None:
        demonstration_prefix(self.config.demonstration)  # a clear error for a malformed one

    def rewrite_prompt(self, method: PromptMethod) -> PromptMethod:
        return with_demonstration(method, self.config.demonstration)
