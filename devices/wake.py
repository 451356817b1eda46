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

    __slots__ = ("_set", "_timer", "_until", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None
        self._until: float | None = None
        """The deadline of the sleep in progress (postpone() may move it later)."""
        self._timer: asyncio.TimerHandle | None = None

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

    def postpone(self, deadline: float) -> None:
        """Let the sleep in progress last until this later deadline (else nothing changes).

        For whoever learns that nothing is due before it (a simulator endpoint, after a
        write): the timer already set fires as it was and only sets one for the new
        deadline, without waking the task; no timer is cancelled and made per call.
        """
        until = self._until
        if self._waiter is not None and until is not None and deadline > until:
            self._until = deadline

    async def sleep_until(self, deadline: float | None) -> None:
        """Until set() or the loop time deadline (None: until set() only)."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._until = deadline
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._expire, waiter, deadline)
        try:
            await waiter
        except BaseException:
            self._drop_timer()
            raise
        finally:
            self._waiter = None
            self._until = None
        if self._set:
            # Woken before the deadline: drop the timer. Not set: the timer itself woke
            # us and is gone already (a cancel would cost a call for nothing).
            self._drop_timer()
        else:
            self._timer = None

    def _drop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[None], armed_for: float) -> None:
        """A deadline passed: let the sleep return (unless set() or a cancel came first),
        or sleep on until the deadline it was postponed to."""
        if waiter.done():
            return
        until = self._until
        if until is not None and until > armed_for:
            self._timer = asyncio.get_running_loop().call_at(until, self._expire, waiter, until)
            return
        waiter.set_result(None)
