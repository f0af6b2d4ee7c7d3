"""Give freed heap memory back to the operating system between rounds.

A round allocates activations whose size follows its shape (up to the round's sentences x their
longest length); glibc keeps what a round frees in its arenas, so the server's resident memory
drifts up to the largest rounds it has seen and swings with each round's shape. ``malloc_trim(0)``
hands the free pages back (it also releases whole free pages inside the heap, not only its top),
so resident memory returns to the model's size plus what is in use. Not glibc (macOS, musl): a no-op.
Used by the server's worker after each round and by the benchmarks before a peak-memory baseline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS (glibc's ``malloc_trim(0)``); False where unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
