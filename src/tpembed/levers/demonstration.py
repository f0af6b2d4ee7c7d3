"""Demonstrations before every prompt: one or k shots (``demonstration``), or an ensemble whose members
each put their own before the prompt (``demo_ensemble``). The demonstrations themselves are data in
:mod:`tpembed.prompts`.

It changes only the prompt text, and the prompt text is in the identity, so it adds no key of its
own (an ensemble's members are the identity's ``ensemble``). With the prefix cache a demonstration is
part of the shared prefix: it costs one row once (kept across calls while the weights are
unchanged), however many shots; each ensemble member is one more pass over the sentences.
"""

from __future__ import annotations

from typing import Any

from ..prompts import PromptMethod, demonstration_prefix, with_demonstration
from .base import Lever


class Demonstration(Lever):
    """``demonstration`` / ``demo_ensemble``: solved examples before every template."""

    order = 30

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config.demonstration is not None or config.demo_ensemble is not None

    def validate(self) -> None:
        for demonstration in self.config.demonstrations():
            demonstration_prefix(demonstration)  # a clear error for a malformed one

    def rewrite_prompt(self, method: PromptMethod) -> PromptMethod | list[PromptMethod]:
        members = [with_demonstration(method, demo) for demo in self.config.demonstrations()]
        return members[0] if len(members) == 1 else members
