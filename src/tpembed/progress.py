"""Quiet start-up: while tpembed shows its own bar per phase, the libraries keep their bars to themselves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Inside the block transformers and huggingface_hub show no progress bars.

    Their warnings stay on (a checkpoint with missing weights must still say so). The previous
    settings come back afterwards. The switches are process-wide (the libraries have no other), so
    a load in another thread at the same moment is quiet too: cosmetics only.
    """
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    bars_on, hub_bars_off = hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns off huggingface_hub's bars
    try:
        yield
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            hub.disable_progress_bars()
