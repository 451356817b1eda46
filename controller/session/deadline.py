"""A time limit for an operation one task repeats many times a second (the runner's sends).

``asyncio.timeout`` schedules a timer for every operation and cancels it when the
operation ends in time, as nearly every send does: twenty times a second per device,
each a timer made, cancelled and left in the loop's heap until it is due or swept (5 s
later), which makes every other timer cost more too. :class:`Deadline` keeps at most
one timer per task instead: set for the first operation, and when it fires, either the
operation it watched has ended (nothing to do; the next one sets a timer again), a
later one runs (the timer is set again for that one's limit), or that one overran:
the task is cancelled and the cancellation leaves the block as ``TimeoutError``, as
with ``asyncio.timeout`` (a cancellation from elsewhere stays a cancellation).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """``with deadline:`` limits the block to ``limit`` seconds; see the module doc.

    One task uses it, one block at a time (blocks do not nest).
    """

    __slots__ = ("_cancelling", "_expired", "_limit", "_task", "_timer", "_until")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._until: float | None = None
        """Loop time by which the block running now must end (None: none runs)."""
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self._expired = False

    @property
    def limit(self) -> float:
        """Seconds a block may take."""
        return self._limit

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._until = loop.time() + self._limit
        if self._timer is None:
            self._timer = loop.call_at(self._until, self._check)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._until = None
        if self._expired:
            self._expired = False
            task = self._task
            assert task is not None
            # Ours when no other cancellation came meanwhile (asyncio.timeout's rule).
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def close(self) -> None:
        """Drop the timer (the task is done with blocks)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        until = self._until
        if until is None:
            return  # the block it was set for ended; the next block sets a timer again
        loop = asyncio.get_running_loop()
        if loop.time() < until:
            # A later block runs: its own limit.
            self._timer = loop.call_at(until, self._check)
            return
        self._expired = True
        assert self._task is not None
        self._task.cancel()
