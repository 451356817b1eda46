"""An event loop whose clock jumps to the next timer instead of waiting for it.

A whole session (runner, safety layer, drivers, firmware models over
MemoryLinks) then plays in the CPU time it needs, not in its wall time, and
every timer fires exactly when due: what the recording shows does not depend
on how busy the machine is. Nothing in this process may do real I/O or use
threads while it runs (MemoryLink does neither).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real file descriptors without waiting; a wait advances the virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # With the loop's own self-pipe as the only descriptor (written only from other
        # threads and signal handlers, which nothing here uses) a poll finds nothing:
        # skipping its system call saves a good share of every loop iteration.
        ready = super().select(0) if len(self.get_map()) > 1 else []
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            raise RuntimeError("virtual time: nothing is scheduled and nothing can wake the loop")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time (starts at 0)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


async def _reap(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on a fresh virtual-time loop, then close the loop."""
    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(coro)
        # Nothing may be left running: a leftover task is a bug of what ran.
        leftover = asyncio.all_tasks(loop)
        if leftover:
            for task in leftover:
                task.cancel()
            loop.run_until_complete(_reap(leftover))
            raise AssertionError(f"tasks left running: {sorted(t.get_name() for t in leftover)}")
        return result
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
