"""Play a program on simulated devices and keep the simulator's recording, in seconds.

The session runner, the safety layer, the real drivers and the firmware
models run as in ``massaged run --simulate``, over in-process MemoryLinks on
a virtual-time loop (tests/method/virtual_time.py), at a speed factor: a
30-minute program plays in a few seconds of CPU and every timer fires on
time, so what the recording shows does not depend on the machine's load.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from controller.profiles import Audience, PainfulSide, Profile, painful_body_side
from controller.safety import SafetyLimits
from controller.session import ScaledClock, SessionResult, SessionRunner, Timing, check_profile
from devices.capabilities import DeviceKind
from devices.drivers.base import Device
from devices.drivers.eb1 import EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from programs.library import get
from programs.model import Program
from programs.movements import Series, recording_channels
from programs.render import render
from programs.timeline import SessionPlan
from simulator.endpoints.memory import MemoryLink
from simulator.firmware.base import Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.firmware.sp1 import SP1Firmware
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder
from tests.method.virtual_time import run_virtual

SPEED = 5.0
"""Session speed: protocol timers (the butterfly's 100 ms cadence, the EMS ramp) stay
real, so a contraction of 2 s is 400 ms of the butterfly's time, still many B0s."""

TIMING = Timing(cue_lead_s=0.0)
"""The runner's own timing, less the precise busy wait, which virtual time does not need."""


@dataclass
class Recorded:
    """One session: its plan, the limits it ran under, the recording and how it ended."""

    plan: SessionPlan
    limits: SafetyLimits
    rows: list[dict[str, Any]]
    t0: float
    """Loop time at which the plan started."""
    speed: float
    result: SessionResult
    devices: dict[str, DeviceKind]

    def series(self, device: str, channel: str) -> Series:
        """One recorded channel in plan seconds (recording_series' answer)."""
        return list(self._channels.get((device, channel), [(0.0, 0.0)]))

    @functools.cached_property
    def _channels(self) -> dict[tuple[str, str], Series]:
        # Every channel in one pass: the tests ask for each channel of a recording in turn.
        return recording_channels(self.rows, t0=self.t0, speed=self.speed)


def _firmware(kind: DeviceKind, recorder: Recorder, speed: float, now: float) -> Firmware:
    if kind is DeviceKind.BELT:
        return VB1Firmware("belt", motors=6, battery=None, recorder=recorder, speed=speed, now=now)
    if kind is DeviceKind.PILLOW:
        return SP1Firmware("pillow", recorder=recorder, speed=speed, now=now)
    return EB1Firmware("butterfly", recorder=recorder, speed=speed, now=now)


_DRIVERS = {
    DeviceKind.BELT: VB1Driver,
    DeviceKind.PILLOW: SP1Driver,
    DeviceKind.BUTTERFLY: EB1Driver,
}


async def _play(program: Program, profile: Profile, speed: float) -> Recorded:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    kinds = set(DeviceKind) - check_profile(profile, set(DeviceKind))
    devices: dict[str, Device] = {}
    for kind in sorted(kinds):
        firmware = _firmware(kind, recorder, speed, loop.time())
        devices[kind.value] = _DRIVERS[kind](MemoryLink(firmware), name=kind.value)
    try:
        await asyncio.gather(*(d.connect() for d in devices.values()))
        plan = render(
            program,
            {name: d.capabilities for name, d in devices.items()},
            painful_side=painful_body_side(profile),
        )
        clock = ScaledClock(speed, monotonic=loop.time)
        runner = SessionRunner(plan, devices, profile=profile, clock=clock, timing=TIMING)
        result = await runner.run()
    finally:
        await asyncio.gather(*(d.close() for d in devices.values()))
    assert clock.started_at is not None
    return Recorded(
        plan=plan,
        limits=runner.limits,
        rows=list(recorder.rows),
        t0=clock.started_at,
        speed=speed,
        result=result,
        devices={name: d.kind for name, d in devices.items()},
    )


def play_recorded(program: Program, profile: Profile, *, speed: float = SPEED) -> Recorded:
    """Play a program for a profile on a simulated belt, pillow and butterfly."""
    return run_virtual(_play(program, profile, speed))


PROFILES = {
    "adult": Profile(),
    "pain-left": Profile(name="pain-left", painful_side=PainfulSide.LEFT),
    "child": Profile(name="child", audience=Audience.CHILD),
}
"""The profiles the built-in programs are read back for."""


@functools.cache
def recorded(program_id: str, profile: str) -> Recorded:
    """One session per built-in program and profile, shared by the tests of a run."""
    return play_recorded(get(program_id).program, PROFILES[profile])
