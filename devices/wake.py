"""What a loop sleeps on: a wake-up flag, and its next deadline if any.

The drivers' background tasks, the session runner (through
devices.drivers.base.Wakeup) and every simulator endpoint's firmware loop sleep
many times a second, and most sleeps end at their deadline: one future and one
timer handle per sleep, where ``asyncio.timeout`` around ``Event.wait()`` would
cancel the task and raise through it at every deadline, for about three times
the CPU.
"""

from __future__ import annotations

import asyncio


class Wake:
    """A flag one task sleeps on until it is set or a deadline passes (asyncio.Event-like)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """Wake the sleeping task, or make its next sleep return at once (never blocks)."""
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_set(self) -> bool:
        """True when set() was called since the last clear()."""
        return self._set

    def clear(self) -> None:
        """Forget earlier wake-ups: called before the task looks at what it acts on."""
        self._set = False

    async def sleep_until(self, deadline: float | None) -> None:
        """Until set() or the loop time deadline (None: until set() only)."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None if deadline is None else loop.call_at(deadline, _release, waiter)
        try:
            await waiter
        except BaseException:
            if timer is not None:
                timer.cancel()
            raise
        finally:
            self._waiter = None
        if timer is not None and self._set:
            # Woken before the deadline: drop the timer. Not set: the timer itself woke
            # us and is gone already (a cancel would cost a call for nothing).
            timer.cancel()


def _release(waiter: asyncio.Future[None]) -> None:
    """The deadline passed: let the sleep return (unless set() or a cancel came first)."""
    if not waiter.done():
        waiter.set_result(None)
