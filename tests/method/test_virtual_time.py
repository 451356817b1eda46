"""The virtual-time loop the recordings play on, and the wake-ups every simulated task sleeps on.

A recording is only as exact as these two: every timer fires at its due time on
virtual time (tests/method/virtual_time.py), and a task sleeping on a Wake
(devices/wake.py) returns at its deadline, when set, or at the later deadline it
was postponed to, never before.
"""

from __future__ import annotations

import asyncio

import pytest

from devices.wake import Wake
from tests.method.virtual_time import run_virtual


def test_timers_fire_at_their_due_time_however_far_apart() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        for delay in (0.001, 2.5, 3600.0, 0.05):
            await asyncio.sleep(delay)
            seen.append(loop.time())
        return seen

    assert run_virtual(scenario()) == pytest.approx([0.001, 2.501, 3602.501, 3602.551])


def test_a_wake_returns_at_its_deadline_or_when_set() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wake = Wake()
        await wake.sleep_until(1.0)
        assert loop.time() == 1.0
        loop.call_at(1.5, wake.set)
        await wake.sleep_until(3.0)
        assert loop.time() == 1.5
        await wake.sleep_until(4.0)  # still set: returns at once
        assert loop.time() == 1.5
        wake.clear()
        await wake.sleep_until(2.0)
        assert loop.time() == 2.0

    run_virtual(scenario())


def test_a_postponed_wake_sleeps_on_to_the_later_deadline_only() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wake = Wake()
        loop.call_at(0.5, wake.postpone, 2.0)  # later: the sleep lasts until 2.0
        loop.call_at(0.6, wake.postpone, 1.5)  # earlier than 2.0: changes nothing
        await wake.sleep_until(1.0)
        assert loop.time() == 2.0
        loop.call_at(2.5, wake.postpone, 5.0)
        loop.call_at(3.0, wake.set)  # a wake-up still ends a postponed sleep at once
        await wake.sleep_until(4.0)
        assert loop.time() == 3.0
        wake.clear()
        wake.postpone(10.0)  # nobody sleeps: nothing to postpone
        await wake.sleep_until(3.5)
        assert loop.time() == 3.5

    run_virtual(scenario())


def test_a_cancelled_sleep_is_cancelled_and_the_wake_serves_again() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wake = Wake()
        sleeper = loop.create_task(wake.sleep_until(1.0))
        await asyncio.sleep(0.1)
        wake.postpone(2.0)
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        wake.postpone(9.0)  # nobody sleeps any more: nothing to postpone
        await wake.sleep_until(0.5)
        assert loop.time() == 0.5

    run_virtual(scenario())
