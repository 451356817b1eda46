"""Keep the garbage collector's long pauses out of a running session.

A full (generation 2) collection walks every object the process holds: with
pydantic, bleak and the programs loaded, that is 10 to 20 ms on a small
machine, during which no cue goes out and no stop is handled. It comes at an
arbitrary moment, as allocations add up. Before a session everything that
exists is frozen (``gc.freeze``): later collections skip it, so the pauses
that remain only walk what the session itself made. After the session the
objects are unfrozen again, so garbage made between sessions is still
collected.

Only the young generations are collected before freezing (what the session's
preparation left behind): a full collection there would be the very pause this
module avoids, 10 to 40 ms as the devices start (and far more in a test
process). Older garbage waits, frozen, until the session ends and it is
unfrozen.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_depth = 0
"""Nested sessions (tests run several runners in one process) freeze once."""


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect the young, freeze what exists now; unfreeze when the block ends."""
    global _depth
    if _depth == 0:
        started = time.perf_counter()
        gc.collect(1)
        gc.freeze()
        if logger.isEnabledFor(logging.DEBUG):  # counting walks every frozen object
            logger.debug(
                "gc: %d objects frozen in %.1f ms",
                gc.get_freeze_count(),
                (time.perf_counter() - started) * 1000,
            )
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
