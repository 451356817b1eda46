"""Caps and every session rule, as the simulated devices physically felt them.

A cap lowered while a session runs (``massaged devices set``, the API, MQTT: all
reach ``set_caps``) takes effect at once on the host's clamp and on the EB1's
own soft limit; a raised one never raises a running session. A cap is a
ceiling, never a multiplier, through the daemon as in ``run --simulate``. The
session's profile, not the one the daemon connected with, sets the EMS ramp.
Each is judged on the simulator's recording, never on the daemon's word.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.cli import main
from controller.profiles import KindCaps, Profile
from controller.session import SessionRunner, SessionState
from controller.simulated import SimulatedDevices
from controller.store import Store
from devices.drivers.eb1 import EB1Driver
from programs import library
from programs.render import render
from simulator.firmware.eb1 import EB1Firmware
from simulator.recording import read_recording
from tests.reliability.world import PROGRAM_ID, World, mqtt, world

BELT, PILLOW, BUTTERFLY = "belt-1", "pillow-1", "butterfly-1"
SPEED = 20.0
"""Session time runs this much faster than real time (the EMS ramp stays real)."""
LONG = 600.0
"""Session seconds of a program the test stops long before its end."""
WATCH_S = 1.0
"""Real seconds the session is watched after a change: a ramp at 5 per 100 ms would
climb 50 in that time, so anything that comes back up shows."""


def _values(rows: Iterable[Mapping[str, Any]], device: str, prefix: str) -> list[int]:
    return [
        int(r["value"])
        for r in rows
        if r["device"] == device and str(r["channel"]).startswith(prefix)
    ]


def _now(w: World, device: str, prefix: str) -> dict[str, int]:
    """The value in force of each of a device's channels (by the recording)."""
    latest: dict[str, int] = {}
    for r in w.rows:
        if r["device"] == device and str(r["channel"]).startswith(prefix):
            latest[str(r["channel"])] = int(r["value"])
    return latest


def _butterfly(w: World) -> EB1Firmware:
    firmware = w.firmware(BUTTERFLY)
    assert isinstance(firmware, EB1Firmware)
    return firmware


async def _set_cap(w: World, name: str, fraction: float) -> None:
    answer = await w.call("set_caps", {"name": name, "max_intensity": fraction})
    assert answer["status"] == "ok", answer


# -- finding 2: a cap changed while a session runs ---------------------------------------


async def test_a_lowered_butterfly_cap_reaches_the_running_session_at_once() -> None:
    async with world(program_seconds=LONG) as w:
        await w.run()
        firmware = _butterfly(w)
        await w.wait_for(lambda: min(firmware.strengths) >= 20, "the butterfly at strength 20")
        await _set_cap(w, BUTTERFLY, 0.05)  # 10 of 200
        await w.wait_for(
            lambda: max(firmware.strengths) <= 10 and firmware.soft_limits == (10, 10),
            "the butterfly at or below its new cap, and the unit's soft limit rewritten",
        )
        settled = len(w.rows)
        await asyncio.sleep(WATCH_S)
        assert w.session_running()
        after = _values(w.rows[settled:], BUTTERFLY, "strength_")
        assert all(value <= 10 for value in after), after
        assert firmware.soft_limits == (10, 10)
        # The host lowered it first with its own B0, so the unit's BF did not have to:
        # the history shows no turn of the wheel that nobody made.
        assert "ems_wheel" not in w.runner_events()


async def test_a_lowered_belt_cap_reaches_the_running_session_at_once() -> None:
    async with world(program_seconds=LONG) as w:
        await w.run()
        await w.wait_for(
            lambda: max(_now(w, BELT, "motor").values(), default=0) >= 100, "the belt at 100"
        )
        await _set_cap(w, BELT, 0.2)  # 51 of 255
        await w.wait_for(
            lambda: max(_now(w, BELT, "motor").values()) <= 51, "the belt at its new cap"
        )
        settled = len(w.rows)
        await asyncio.sleep(WATCH_S)
        assert w.session_running()
        after = _values(w.rows[settled:], BELT, "motor")
        assert after, "the session went on driving the belt"
        assert all(value <= 51 for value in after), after


async def test_a_cap_lowered_over_mqtt_reaches_the_running_session() -> None:
    async with world(program_seconds=LONG) as w, mqtt(w) as m:
        await w.run()
        firmware = _butterfly(w)
        await w.wait_for(lambda: min(firmware.strengths) >= 20, "the butterfly at strength 20")
        answer = await m.request("set_caps", {"name": BUTTERFLY, "max_intensity": 0.05})
        assert answer.get("status") == "ok", answer
        await w.wait_for(
            lambda: max(firmware.strengths) <= 10 and firmware.soft_limits == (10, 10),
            "the butterfly at or below the cap set over MQTT",
        )


async def test_a_raised_cap_never_raises_the_running_session() -> None:
    def low_caps(store: Store) -> None:
        store.update_device(BUTTERFLY, caps={"butterfly": 0.1})  # 20 of 200
        store.update_device(BELT, caps={"belt": 0.2})  # 51 of 255

    async with world(program_seconds=LONG, prepare_store=low_caps) as w:
        await w.run()
        firmware = _butterfly(w)
        await w.wait_for(lambda: firmware.strengths == (20, 20), "the butterfly at its cap 20")
        await w.wait_for(
            lambda: max(_now(w, BELT, "motor").values(), default=0) == 51, "the belt at 51"
        )
        raised = len(w.rows)
        await _set_cap(w, BUTTERFLY, 1.0)
        await _set_cap(w, BELT, 1.0)
        await asyncio.sleep(WATCH_S)
        assert w.session_running()
        assert all(v <= 20 for v in _values(w.rows[raised:], BUTTERFLY, "strength_"))
        assert all(v <= 51 for v in _values(w.rows[raised:], BELT, "motor"))
        assert firmware.soft_limits == (20, 20)


async def test_a_profile_lowered_from_the_command_line_reaches_the_running_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with world(program_seconds=LONG) as w:
        config = w.folder / "config.toml"
        config.write_text(f'[daemon]\nsocket = "{w.socket}"\n')
        monkeypatch.setenv("MASSAGED_CONFIG", str(config))
        await w.run()
        firmware = _butterfly(w)
        await w.wait_for(lambda: min(firmware.strengths) >= 20, "the butterfly at strength 20")
        db = w.folder / "data" / "massaged.db"
        args = ["profiles", "set", "default", "--cap", "butterfly=0.05", "--db", str(db)]
        assert await asyncio.to_thread(main, args) == 0
        await w.wait_for(
            lambda: max(firmware.strengths) <= 10 and firmware.soft_limits == (10, 10),
            "the butterfly at or below the profile's new cap",
        )
        settled = len(w.rows)
        await asyncio.sleep(WATCH_S)
        assert w.session_running()
        assert all(v <= 10 for v in _values(w.rows[settled:], BUTTERFLY, "strength_"))


# -- finding 4: the session's profile sets the EMS ramp ----------------------------------


def _rises_within(rows: Sequence[Mapping[str, Any]], speed: float, window_s: float) -> list[str]:
    """Each butterfly strength compared with the value in force window_s (real) before it."""
    problems: list[str] = []
    for channel in ("strength_a", "strength_b"):
        series = [
            (float(r["t"]) / speed, int(r["value"]))
            for r in rows
            if r["device"] == BUTTERFLY and r["channel"] == channel
        ]
        for i, (t, value) in enumerate(series):
            before = [v for t0, v in series[:i] if t0 <= t - window_s]
            earlier = before[-1] if before else 0
            within = [v for t0, v in series[:i] if t0 > t - window_s]
            lowest = min([earlier, *within])
            if value - lowest > 1:
                problems.append(f"{channel} rose {lowest} -> {value} within {window_s} s at {t}")
    return problems


async def test_the_session_profiles_ems_ramp_holds_through_the_daemon() -> None:
    def slow_profile(store: Store) -> None:
        store.save_profile(Profile(name="slow", ems_max_raise_per_100ms=1))

    async with world(program_seconds=LONG, prepare_store=slow_profile) as w:
        # Answers 150 ms late: the driver holds each change until its B1, while the safety
        # layer's own ramp goes on, so every late B1 tempts the driver to catch up at once.
        w.fault(BUTTERFLY, "delay", 0.15)
        start = len(w.rows)
        await w.run(profile="slow")
        driver = w.daemon.supervisor.devices[BUTTERFLY].device
        assert isinstance(driver, EB1Driver)
        await w.wait_for(lambda: min(_butterfly(w).strengths) >= 12, "the butterfly at 12")
        # The daemon connected with the default profile (5 per 100 ms); the session's is 1.
        assert driver.max_raise == 1
        # 1 per 100 ms: never more than 1 within 70 ms of arrival (30 ms for the radio).
        assert _rises_within(w.rows[start:], w.speed, 0.07) == []


async def test_an_in_process_session_gives_the_unit_its_profiles_limits() -> None:
    # run --simulate and run --no-daemon connect their drivers with no profile at all:
    # the session start is what gives the unit this profile's soft limits and ramp.
    profile = Profile(name="ann", caps=KindCaps(butterfly=0.1), ems_max_raise_per_100ms=2)
    async with SimulatedDevices(["butterfly"], speed=SPEED) as sim:
        driver = sim.devices[BUTTERFLY]
        assert isinstance(driver, EB1Driver)
        program = library.get("collar-zone").program
        plan = render(program, {name: d.capabilities for name, d in sim.devices.items()})
        runner = SessionRunner(plan, sim.devices, profile=profile, speed=SPEED)
        started = asyncio.Event()
        runner.add_listener(lambda event: started.set() if event.kind == "start" else None)
        task = asyncio.get_running_loop().create_task(runner.run())
        try:
            async with asyncio.timeout(10):
                await started.wait()
            assert runner.state == SessionState.RUNNING
            firmware = sim.firmware(BUTTERFLY)
            assert isinstance(firmware, EB1Firmware)
            assert firmware.soft_limits == (20, 20)
            assert driver.max_raise == 2
        finally:
            runner.stop()
            await task


# -- finding 3: a cap is a ceiling on every path -----------------------------------------

SECONDS = 80.0
"""Session seconds of the property's program: 4 s real. The EMS ramp runs in real time
(5 per 100 ms, counted from when each raise left): about 1.2 s to the butterfly's peak
here, with room for a loaded machine on both paths (at 2 s, a daemon once peaked 4 short)."""


def _program(intensity: float) -> str:
    return f"""
id = "{PROGRAM_ID}"
title = "Caps on both paths"
audience = "adult"
max_duration = 30
description = "One step at one intensity on every device."
cites = "none: a test program"

[[steps]]
technique = "kneading"
zone = "collar_zone"
duration_s = {SECONDS:g}
intensity = {intensity}
heat = false
label = "One intensity"
"""


def _peaks(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """The highest recorded value of each capped channel, by kind (device ids differ)."""
    peaks: dict[tuple[str, str], int] = {}
    for r in rows:
        kind, channel, value = str(r["kind"]), str(r["channel"]), r["value"]
        capped = channel.startswith(("motor", "strength_")) or channel == "speed"
        if capped and isinstance(value, int):
            peaks[(kind, channel)] = max(value, peaks.get((kind, channel), 0))
    return peaks


def _in_process(program: Path, profile: Profile, folder: Path) -> dict[tuple[str, str], int]:
    """``massaged run FILE --simulate`` (devices in this process), as the user runs it."""
    db, record = folder / "db", folder / "rec.jsonl"
    with Store.open(db) as store:
        store.save_profile(profile)
    args = ["run", str(program), "--simulate", "--speed", f"{SPEED:g}", "--no-display", "--well"]
    assert main([*args, "--profile", profile.name, "--db", str(db), "--record", str(record)]) == 0
    return _peaks(read_recording(record))


async def _through_a_daemon(text: str, profile: Profile) -> dict[tuple[str, str], int]:
    """The same session through a daemon over the same simulated devices."""

    def prepare(store: Store) -> None:
        store.save_profile(profile)
        for name in (BELT, PILLOW, BUTTERFLY):
            store.update_device(name, caps={})  # only the profile's caps, as in-process

    async with world(speed=SPEED, prepare_store=prepare) as w:
        (w.folder / "programs" / f"{PROGRAM_ID}.toml").write_text(text)
        await w.run(profile=profile.name)
        result = await w.wait_ended(timeout=SECONDS / SPEED + 20)
        assert result["outcome"] == "completed", result
        return _peaks(w.rows)


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    belt=st.floats(0.1, 1.0),
    pillow=st.sampled_from([0.34, 0.67, 1.0]),
    butterfly=st.floats(0.02, 1.0),
    intensity=st.sampled_from([0.5, 1.0]),
    name=st.sampled_from(["default", "ann"]),
)
@example(belt=0.8, pillow=1.0, butterfly=0.1, intensity=1.0, name="ann")
@example(belt=0.8, pillow=1.0, butterfly=0.5, intensity=1.0, name="default")
def test_a_cap_is_a_ceiling_in_process_and_through_the_daemon(
    belt: float, pillow: float, butterfly: float, intensity: float, name: str
) -> None:
    profile = Profile(name=name, caps=KindCaps(belt=belt, pillow=pillow, butterfly=butterfly))
    text = _program(intensity)
    with tempfile.TemporaryDirectory(prefix="msd-caps-") as tmp:
        folder = Path(tmp)
        program = folder / f"{PROGRAM_ID}.toml"
        program.write_text(text)
        alone = _in_process(program, profile, folder)
    daemon = asyncio.run(_through_a_daemon(text, profile))
    assert daemon == alone
    # A ceiling, never a multiplier: the program's own strength (60 at intensity 1.0)
    # up to the cap, which is floor(cap × 200).
    wanted = round(60 * intensity)
    cap = math.floor(butterfly * 200 + 1e-9)
    assert daemon[("butterfly", "strength_a")] == min(wanted, cap)
