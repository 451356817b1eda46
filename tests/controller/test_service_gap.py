"""A gap in the host's service (a stall, a blocked loop, a suspended daemon) is survived
safely: every device comes back through a fresh ramp from zero, never at a held level,
and no frame built before the gap goes out after it.

The stall is real: a callback blocks the event loop for longer than the 0.5 s lease, as
``kill -STOP`` freezes the daemon. The firmware models run on the same loop, so they
catch up afterwards and record what happened at the instants it happened. Each device is
judged on that recording, by its own protocol's rule.
"""

from __future__ import annotations

import asyncio
import math
from typing import cast

import pytest

from controller.session import Outcome, SessionState
from devices.protocols import vb1
from tests.controller.test_session import (
    RAMPED,
    Rig,
    kinds_of,
    make_plan,
    make_rig,
    make_runner,
    running,
    steady,
    wait_until,
)
from tests.devices.test_driver_wakeups import freeze

EMS_STEP = 5
"""EB1 rule 2: a strength rises by at most 5 per 100 ms."""
EMS_WINDOW = 0.1


def recorded(
    rig: Rig, device: str, channel: str, since: float, until: float = math.inf
) -> list[tuple[float, int]]:
    """(loop time, value) of each recorded change of a channel from since until until."""
    return [
        (cast(float, r["t"]), cast(int, r["value"]))
        for r in rig.recorder.rows
        if r["device"] == device
        and r["channel"] == channel
        and since <= cast(float, r["t"]) < until
    ]


def level_at(rig: Rig, device: str, channel: str, t: float) -> int:
    """The value a channel held at loop time t (by the recording)."""
    before = [v for ts, v in recorded(rig, device, channel, -math.inf) if ts <= t]
    return before[-1] if before else 0


def assert_ramped_from_zero(changes: list[tuple[float, int]], start: float, what: str) -> None:
    """Every value from start on within the EMS ramp from 0 at start: 5 per 100 ms at most."""
    for t, value in changes:
        allowed = EMS_STEP * (math.floor((t - start) / EMS_WINDOW + 1e-9) + 1)
        assert value <= allowed, (
            f"{what}: {value} at {t - start:.3f} s after the gap, the ramp allows {allowed}: "
            f"{[(round(ts - start, 3), v) for ts, v in changes[:8]]}"
        )


def assert_back_from_zero(changes: list[tuple[float, int]], full: int, what: str) -> None:
    """The first change after the gap is to 0, or to a low step of a ramp; then it only rises."""
    assert changes, f"{what}: nothing changed after the gap: it went on at its held level"
    values = [v for _, v in changes]
    assert values[0] < full // 2, f"{what}: came back at {values[0]} of {full}: {values[:8]}"
    climb = values[: values.index(full) + 1] if full in values else values
    assert climb == sorted(climb), f"{what}: no steady ramp after the gap: {climb[:12]}"


@pytest.mark.parametrize("stall", [0.8, 1.5], ids=["shorter-than-the-belt-watchdog", "longer"])
async def test_after_a_stall_every_device_comes_back_through_a_fresh_ramp(stall: float) -> None:
    """Promises 2 and 4: a frozen loop (kill -STOP) is a gap in service. Afterwards the
    belt, the pillow and the butterfly all start again from zero and ramp; the belt's
    first SET_LEVELS is not its pre-stall level and the butterfly never jumps back to
    its held strength."""
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(12.0, level=200, speed=2, strength=20))
        runner = make_runner(rig, plan, timing=RAMPED)
        async with running(runner) as task:
            await wait_until(
                lambda: (
                    rig.values("belt", "motor1")[-1:] == [200]
                    and rig.values("pillow", "speed")[-1:] == [2]
                    and rig.values("butterfly", "output_a")[-1:] == [20]
                ),
                what="every device full",
            )
            frozen_at = asyncio.get_running_loop().time()
            resumed = await freeze(stall)
            await wait_until(
                lambda: (
                    level_at(rig, "belt", "motor1", math.inf) == 200
                    and level_at(rig, "pillow", "speed", math.inf) == 2
                    and level_at(rig, "butterfly", "output_a", math.inf) == 20
                    and bool(recorded(rig, "butterfly", "output_a", resumed))
                ),
                timeout=6.0,
                what="every device full again",
            )
            assert runner.state == SessionState.RUNNING
            stopping = asyncio.get_running_loop().time()  # then the fade-out: not judged
            runner.stop()
            result = await task
        assert result.outcome == Outcome.STOPPED

        # The butterfly: its output ended by its own rule during the stall, and after it
        # climbs from 0 by rule 2, never straight back to the strength it held.
        assert level_at(rig, "butterfly", "output_a", resumed) == 0, [
            (round(t - frozen_at, 4), v)
            for t, v in recorded(rig, "butterfly", "output_a", frozen_at - 0.3, resumed + 0.3)
        ] + [("resumed", round(resumed - frozen_at, 4))]
        ems_after = recorded(rig, "butterfly", "output_a", resumed, stopping)
        assert_ramped_from_zero(ems_after, resumed, "butterfly")

        # The belt and the pillow: back to zero (at once if still running), then a ramp.
        for device, channel, full in (("belt", "motor1", 200), ("pillow", "speed", 2)):
            changes = recorded(rig, device, channel, resumed, stopping)
            assert_back_from_zero(changes, full, device)

        # No frame from before the gap: the belt's first SET_LEVELS after it is not the
        # level it held, and no PING fed it at that level first.
        after = [vb1.decode(m.data) for m in rig.links["belt"].written if m.t >= resumed]
        levels = [tuple(f.payload) for f in after if f.cmd == vb1.Command.SET_LEVELS]
        assert levels, "the belt was never driven again"
        assert levels[0] != (200,) * 4, "a stale pre-stall SET_LEVELS went out after the gap"
        stops = [i for i, f in enumerate(after) if f.cmd == vb1.Command.STOP]
        if level_at(rig, "belt", "motor1", resumed) > 0:
            # Still running at the gap's end (shorter than its watchdog): stopped first.
            assert stops, "the belt ran on at its held level after the gap"
            assert all(f.cmd != vb1.Command.PING for f in after[: stops[0]])
        assert frozen_at < resumed
        assert "service_gap" in kinds_of(rig.events)
