"""Soak: many simulated devices, session after session, with random faults, checked throughout.

    python bench/soak.py --minutes 1 [--devices 6] [--seed 1] [--speed 20]

The devices are served in this process by a :class:`simulator.fleet.Fleet` on
real endpoints (serial belts on pseudo-terminals, the rest on the simulated
BLE radio) and driven by the real drivers through the session runner and the
safety layer, in sets of up to three (each set runs its own sessions, all
sets at once). Every session plays a random synthetic plan that asks for
more than every cap, at a scaled session clock, while random faults are
injected: link drops, corrupted bytes, lost and late answers, split reads,
the belt's stop button, overheating, an empty pillow, the EMS wheel, a cap
lowered or raised mid-session (SessionRunner.tighten, as ``massaged
set-caps`` reaches a running session), stalls, and the user's own stop,
emergency stop, "gentler" and pause.

A stall blocks the whole event loop for 0.6 to 1.5 s (time.sleep in a loop
callback), longer than the host's 0.5 s lease: it stands in for a daemon
stopped with SIGSTOP or frozen, which this in-process soak cannot do to
itself (the fault matrix does it to a daemon process). The simulated devices
share the loop, so their firmware catches up on its own timers once it runs
again. A flood of control connections needs a control socket, which the soak
has not: it is a cell of the fault matrix only.

Every output change of every device is checked as it happens
(tests/reliability/checks.py): never past its cap, the EMS strength never
faster than 5 per 100 ms (except what the user set with the wheel, and while
the radio corrupts an EB1's frames, which carry no checksum: the soft limit
holds then, and is checked), the belt off after its stop button, no kneading
on an empty pillow, every device off after each session; after a stall,
every device that was on back at zero within 1.5 s (never going on at its
held level) and the EMS back through its ramp from zero; after a lowered
cap, no output above it once 0.5 s have passed, held ones included; a raised
cap never raises the running session. Every finished session must be in the
history with its outcome.

Prints the counts, then one final JSON line. Exit status 1 when an unsafe
output was seen or a history row was lost, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.errors import StoreError
from controller.profiles import DEFAULT_PROFILE
from controller.safety import SafetyLimits
from controller.session import Outcome, SessionResult, SessionRunner, Timing
from controller.store import Store
from devices.capabilities import DeviceKind, KneadDirection
from devices.drivers.base import Device
from devices.errors import MassagedError
from devices.kinds import make_device
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from programs.timeline import Cue, DeviceTimeline, SessionPlan, StepSpan
from simulator.ble.backend import SimBleakClient
from simulator.fleet import Fleet, SimDevice, parse_spec
from simulator.recording import Recorder
from tests.reliability.checks import OutputAudit, device_cap, is_on

logger = logging.getLogger("soak")

KINDS = ("belt", "pillow", "butterfly", "belt:ble,motors=4,heater=no")
"""Device specs, cycled: a serial belt, a pillow, a butterfly, a Bluetooth belt."""
SET_SIZE = 3
TIMING = Timing(
    reconnect_first_s=0.2, reconnect_max_s=1.0, fault_grace_s=4.0, connect_timeout_s=5.0
)
"""The runner's defaults, with quicker reconnects and a shorter wait when every device is lost."""
IN_FLIGHT_S = 0.5
"""A belt command already on the wire when its stop button is pressed is undone within this."""
EMPTY_GRACE_S = 0.5
"""Real seconds for the pillow's STATE (its pressure switch) to reach the host."""
QUIET_WAIT_S = 2.5
"""After a session, how long a device may take to be off (a lost link: its own rule, 1 s)."""
LINK_FAULTS = ("link_drop", "corrupt", "drop", "delay", "split")
CONTROLS = ("user_stop", "emergency_stop", "gentler", "pause")
STALL_S = (0.6, 1.5)
"""How long a stall blocks the event loop (real seconds): past the host's 0.5 s lease."""
FIRST_STALL_S = (1.0, 2.5)
"""When the first stall comes (real seconds after the start), so a short run has one."""
STALL_EVERY_S = (3.0, 8.0)
"""Real seconds between the end of one stall and the next."""
CAP_RAISE_CHANCE = 0.3
"""Of the cap changes, how many raise the cap (the rest lower it)."""
CHECK_EVERY_S = 0.1
"""How often held outputs are judged against the deadlines (a gap, a lowered cap)."""


def rss_mib() -> float:
    """This process's resident memory in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


# -- the checks, fed as outputs change ----------------------------------------------------


@dataclass
class DeviceWatch:
    """What the soak knows about one device between its output changes."""

    kind: str
    channels: dict[str, Any] = field(default_factory=dict)
    in_session: bool = False
    stop_pressed_at: float | None = None
    """Session time of the belt's stop button in the running session."""
    empty_since: float | None = None
    """Session time the pillow was lifted."""


class Watcher(Recorder):
    """A recorder that checks every row as it comes and keeps none (a long run stays small)."""

    def __init__(self, audit: OutputAudit, *, t0: float, speed: float) -> None:
        super().__init__(None, t0=t0, speed=speed)
        self.keep_in_memory = False
        self.audit = audit
        self.devices: dict[str, DeviceWatch] = {}
        self.unsafe: list[str] = []
        self.woke_at = -1e9
        """Session time the latest stall ended (the host's grace times count from there)."""

    def record(self, now: float, device: str, kind: str, channel: str, value: int | str) -> None:
        """Check one output change."""
        t = round((now - self.t0) * self.speed, 4)
        row = {"t": t, "device": device, "kind": kind, "channel": channel, "value": value}
        self.audit.feed(row)
        watch = self.devices.setdefault(device, DeviceWatch(kind))
        watch.channels[channel] = value
        if not isinstance(value, int) or value == 0 or not is_on(kind, watch.channels):
            return
        if not watch.in_session:
            self.note(f"t={t:.2f} {device} {channel}={value} with no session running")
        pressed = watch.stop_pressed_at
        # A stall in between gives the host its grace again from the moment it runs.
        if pressed is not None and t > max(pressed, self.woke_at) + IN_FLIGHT_S * self.speed:
            self.note(f"t={t:.2f} {device} {channel}={value} after its stop button")
        lifted = watch.empty_since
        if (
            channel == "speed"
            and lifted is not None
            and t > max(lifted, self.woke_at) + EMPTY_GRACE_S * self.speed
        ):
            self.note(f"t={t:.2f} {device} kneading at {value} on an empty pillow")

    def note(self, text: str) -> None:
        """An unsafe output."""
        logger.error("UNSAFE: %s", text)
        self.unsafe.append(text)

    def now(self) -> float:
        """Session time now, as the rows carry it."""
        return (time.monotonic() - self.t0) * self.speed

    def woke(self) -> None:
        """The event loop runs again after a stall: a service gap for every device."""
        self.woke_at = self.now()
        self.audit.gap(self.woke_at)

    def woke_real(self) -> float:
        """Monotonic time the latest stall ended."""
        return self.t0 + self.woke_at / self.speed


# -- plans ---------------------------------------------------------------------------------


def random_output(rng: random.Random, device: Device) -> Output:
    """An output asking for more than any cap allows, now and then nothing at all."""
    caps = device.capabilities
    top = 0 if rng.random() < 0.1 else rng.randint(100, 255)
    if caps.kind == DeviceKind.BELT:
        levels = tuple(rng.randint(top // 2, top) for _ in caps.motors)
        return BeltOutput(levels, heat=caps.heater and rng.random() < 0.4)
    if caps.kind == DeviceKind.PILLOW:
        direction = rng.choice(list(KneadDirection))
        return PillowOutput(3 if top else 0, direction, heat=caps.heater and rng.random() < 0.4)
    strength = min(200, top)
    channel = EmsChannelOutput(strength, rng.randint(10, 240), rng.randint(20, 100))
    other = EmsChannelOutput(rng.randint(0, strength), rng.randint(10, 240), rng.randint(20, 100))
    return ButterflyOutput(a=channel, b=other)


def random_plan(
    rng: random.Random, devices: dict[str, Device], number: int, speed: float
) -> SessionPlan:
    """A few steps of random outputs, 1.5 to 5 real seconds long in all."""
    steps = rng.randint(1, 4)
    total = rng.uniform(1.5, 5.0) * speed
    bounds = sorted(rng.uniform(0, total) for _ in range(steps - 1))
    starts = [0.0, *bounds]
    ends = [*bounds, total]
    spans = [
        StepSpan(i, "soak", "collar_zone", f"step {i + 1}", start, end)
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]
    timelines: dict[str, DeviceTimeline] = {}
    for name, device in devices.items():
        cues: list[Cue] = []
        for span in spans:
            # Several cues per step: outputs change as in a real program.
            t = span.start
            while t < span.end:
                cues.append(Cue(t, random_output(rng, device), span.index))
                t += rng.uniform(0.2, 1.0) * speed
        last = cues[-1].output if cues else random_output(rng, device)
        cues.append(Cue(total, _off(last), len(spans) - 1))
        timelines[name] = DeviceTimeline(name, device.capabilities, cues)
    return SessionPlan(f"soak-{number}", "Soak", "adult", total, spans, timelines)


def _off(like: Output) -> Output:
    if isinstance(like, BeltOutput):
        return BeltOutput.off(len(like.levels))
    if isinstance(like, PillowOutput):
        return PillowOutput.off()
    return ButterflyOutput.off()


# -- the soak ----------------------------------------------------------------------------


@dataclass
class Counts:
    """Everything the soak counts."""

    sessions: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    lost_rows: list[str] = field(default_factory=list)
    refused: int = 0
    stalled_s: float = 0.0


class Soak:
    """The fleet, the drivers, the store and the sets of devices that run sessions."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.speed: float = args.speed
        self.folder = Path(tempfile.mkdtemp(prefix="msd-soak-"))
        self.counts = Counts()
        self.fleet: Fleet | None = None
        self.store: Store | None = None
        self.devices: dict[str, Device] = {}
        self.sims: dict[str, SimDevice] = {}
        self.caps: dict[str, float] = {}
        self.audit: OutputAudit | None = None
        self.watcher: Watcher | None = None
        self.deadline = 0.0
        self._corrupting: Counter[str] = Counter()

    async def start(self) -> None:
        """Serve the devices, connect a driver to each, open the store."""
        specs = [parse_spec(KINDS[i % len(KINDS)]) for i in range(self.args.devices)]
        kinds: dict[str, str] = {}
        names: list[str] = []
        counts: Counter[DeviceKind] = Counter()
        for spec in specs:
            counts[spec.kind] += 1
            name = f"{spec.kind.value}-{counts[spec.kind]}"
            names.append(name)
            kinds[name] = spec.kind.value
            # A registry cap of its own for each device, below the profile's now and then.
            self.caps[name] = round(self.rng.uniform(0.3, 1.0), 2)
        units = {
            name: device_cap(
                kinds[name], DEFAULT_PROFILE.caps.for_kind(DeviceKind(kinds[name])), self.caps[name]
            )
            for name in names
        }
        self.audit = OutputAudit(units, kinds, speed=self.speed)
        loop = asyncio.get_running_loop()
        self.watcher = Watcher(self.audit, t0=loop.time(), speed=self.speed)
        radio = self.folder / "radio.sock"
        self.fleet = Fleet(specs, radio_path=radio, recorder=self.watcher, speed=self.speed)
        served = await self.fleet.start()
        for sim in served:
            self.sims[sim.id] = sim
            self.watcher.devices[sim.id] = DeviceWatch(sim.spec.kind.value)
            options: dict[str, Any] = {}
            if sim.spec.kind == DeviceKind.BUTTERFLY:
                # EB1 daemon rule 1, as the daemon does: the unit's soft limit is the cap.
                options["soft_limits"] = (units[sim.id], units[sim.id])
            if sim.spec.transport == "serial":
                device = make_device(
                    sim.spec.kind, sim.address, transport="serial", name=sim.id, **options
                )
            else:
                device = make_device(
                    sim.spec.kind,
                    sim.address,
                    transport="ble",
                    name=sim.id,
                    ble_backend=SimBleakClient,
                    ble_kwargs={"radio": str(radio)},
                    **options,
                )
            self.devices[sim.id] = device
        await asyncio.gather(*(d.connect(timeout=10.0) for d in self.devices.values()))
        self.store = Store.open(self.folder / "massaged.db")

    async def close(self) -> None:
        """Close the drivers, the fleet and the store; remove the folder."""
        await asyncio.gather(*(d.close() for d in self.devices.values()))
        if self.fleet is not None:
            await self.fleet.close()
        if self.store is not None:
            self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- one set of devices -------------------------------------------------------------------

    async def run_set(self, names: list[str], number: int) -> None:
        """Sessions on one set of devices, one after the other, until the time is up."""
        rng = random.Random(self.rng.random())
        devices = {name: self.devices[name] for name in names}
        session = 0
        while time.monotonic() < self.deadline:
            session += 1
            await self.one_session(rng, devices, f"{number}.{session}", first=session == 1)

    async def one_session(
        self, rng: random.Random, devices: dict[str, Device], label: str, *, first: bool = False
    ) -> None:
        """Play one random plan with random faults; check its end and its history row.

        first: the set's first session, whose first fault is a cap change (every run has one).
        """
        assert self.store is not None
        assert self.watcher is not None
        for device in devices.values():
            # A new session is the user's word: the belt's stop-button latch is for one session
            # (the daemon does not clear it yet: docs/safety.md, known limits).
            reset = getattr(device, "reset_session", None)
            if callable(reset):
                reset()
        ready = {n: d for n, d in devices.items() if d.is_connected}
        for name, device in devices.items():
            if not device.is_connected:
                with contextlib.suppress(MassagedError, OSError, TimeoutError):
                    await device.connect(timeout=5.0)
                    ready[name] = device
        if not ready:
            await asyncio.sleep(0.5)
            return
        plan = random_plan(rng, ready, self.counts.sessions + 1, self.speed)
        limits = {name: self.limits(name) for name in ready}
        assert self.audit is not None
        for name in ready:
            # A cap raised in the last session counts from this one.
            self.audit.set_cap(name, self.units(name))
        runner = SessionRunner(
            plan,
            ready,
            store=self.store,
            speed=self.speed,
            scale=rng.choice((1.0, 1.0, 0.8)),
            device_limits=limits,
            timing=TIMING,
        )
        for name in ready:
            self.watcher.devices[name].in_session = True
        self.counts.sessions += 1
        task = asyncio.get_running_loop().create_task(runner.run(), name=f"soak-{label}")
        chaos = asyncio.get_running_loop().create_task(
            self.chaos(rng, runner, list(ready), cap_first=first)
        )
        result: SessionResult | None = None
        try:
            result = await task
        except MassagedError as err:
            self.counts.refused += 1
            logger.warning("session %s refused: %s", label, err)
        finally:
            chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos
            await self.heal(list(ready))
        await self.check_end(list(ready), label)
        if result is not None:
            self.counts.outcomes[result.outcome.value] += 1
            self.check_history(result, label)

    async def chaos(
        self, rng: random.Random, runner: SessionRunner, names: list[str], *, cap_first: bool
    ) -> None:
        """Inject faults and the user's controls at random moments of a session."""
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        while not runner.done.is_set():
            name = rng.choice(names)
            kind = self.sims[name].spec.kind
            options: list[str] = [*LINK_FAULTS, "cap_change"]
            if kind == DeviceKind.BELT:
                options += ["stop_button", "overheat"]
            elif kind == DeviceKind.PILLOW:
                options += ["overheat", "empty_pillow"]
            else:
                options += ["wheel", "wheel", "cap_change"]
            if rng.random() < 0.25:
                options = list(CONTROLS)
            fault = "cap_change" if cap_first else rng.choice(options)
            cap_first = False
            if fault == "cap_change":
                fault = "cap_raised" if rng.random() < CAP_RAISE_CHANCE else "cap_lowered"
            self.counts.faults[fault] += 1
            await self.inject(rng, runner, name, fault)
            await asyncio.sleep(rng.uniform(0.2, 1.2))

    async def inject(
        self, rng: random.Random, runner: SessionRunner, name: str, fault: str
    ) -> None:
        """One fault or control; a lasting fault ends after a random time."""
        assert self.fleet is not None
        assert self.watcher is not None
        assert self.audit is not None
        radio = self.fleet.radio
        watch = self.watcher.devices[name]
        if fault == "user_stop":
            runner.stop()
        elif fault == "emergency_stop":
            await runner.emergency_stop()
        elif fault == "gentler":
            runner.gentler()
        elif fault == "pause":
            runner.pause()
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            runner.resume()
        elif fault == "stop_button":
            watch.stop_pressed_at = self.watcher.now()
            radio.fault(name, "press_stop_button")
        elif fault == "overheat":
            radio.fault(name, "overheat")
        elif fault in ("cap_lowered", "cap_raised"):
            await self.change_cap(rng, runner, name, lower=fault == "cap_lowered")
        elif fault == "empty_pillow":
            lifted = time.monotonic()
            watch.empty_since = self.watcher.now()
            radio.fault(name, "set_occupied", False)
            hold = rng.uniform(0.2, 1.0)
            # At the latest when the session pauses (5 session seconds), kneading has stopped.
            latest = TIMING.empty_pause_s / self.speed + EMPTY_GRACE_S
            if hold > latest:
                await self.wait_unstalled(lifted, latest)
                speed = self.sims[name].firmware.outputs.get("speed")
                if speed and not runner.done.is_set():
                    self.watcher.note(f"{name} kneads at {speed} on a pillow empty for {latest} s")
                await asyncio.sleep(max(0.0, lifted + hold - time.monotonic()))
            else:
                await asyncio.sleep(hold)
            radio.fault(name, "set_occupied", True)
            watch.empty_since = None
        elif fault == "wheel":
            wheel = [rng.randint(0, 200), rng.choice([None, rng.randint(0, 200)])]
            self.audit.user_setting(name, True)
            try:
                radio.fault(name, "turn_wheel", wheel)
            finally:
                self.audit.user_setting(name, False)
        elif fault == "link_drop":
            radio.fault(name, "link_down")
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            radio.fault(name, "link_up")
        else:
            value: object = {
                "corrupt": rng.choice((0.01, 0.02)),
                "drop": rng.uniform(0.2, 0.5),
                "delay": rng.uniform(0.12, 0.2),
                "split": True,
            }[fault]
            corrupting = fault == "corrupt" and self.sims[name].spec.kind == DeviceKind.BUTTERFLY
            if corrupting:
                self._corrupting[name] += 1
                self.audit.ramp_unchecked(name, True)
            radio.fault(name, fault, value)
            try:
                await asyncio.sleep(rng.uniform(0.5, 2.0))
            finally:
                radio.fault(name, fault, 0.0 if fault != "split" else False)
                if corrupting:
                    await self._corruption_over(name)

    def limits(self, name: str) -> SafetyLimits:
        """A device's limits from the default profile and its registry cap."""
        kind = self.devices[name].kind.value
        return SafetyLimits.from_profile(DEFAULT_PROFILE, device_caps={kind: self.caps[name]})

    def units(self, name: str) -> int:
        """A device's cap in device units (the audit's)."""
        kind = self.devices[name].kind
        return device_cap(kind.value, DEFAULT_PROFILE.caps.for_kind(kind), self.caps[name])

    async def change_cap(
        self, rng: random.Random, runner: SessionRunner, name: str, *, lower: bool
    ) -> None:
        """The user changes a device's cap mid-session, as ``massaged set-caps`` does.

        A lowered one reaches the running session at once (the audit holds every
        output to it after CAP_GRACE_S); a raised one counts from the next session.
        """
        assert self.audit is not None
        assert self.watcher is not None
        old = self.caps[name]
        new = round(rng.uniform(0.05, old) if lower else rng.uniform(old, 1.0), 2)
        self.caps[name] = new
        if new < old:
            self.audit.lower_cap(name, self.units(name), self.watcher.now())
        with contextlib.suppress(MassagedError):
            await runner.tighten(name, self.limits(name))

    async def wait_unstalled(self, since: float, seconds: float) -> None:
        """Wait until seconds have passed since since (monotonic), and as long again after a
        stall that ended meanwhile: a stalled host had no time to act."""
        assert self.watcher is not None
        while True:
            base = max(since, self.watcher.woke_real())
            left = base + seconds - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def stalls(self) -> None:
        """Now and then block the whole event loop longer than the lease (a stopped daemon)."""
        assert self.watcher is not None
        watcher = self.watcher
        rng = random.Random(self.rng.random())
        loop = asyncio.get_running_loop()
        await asyncio.sleep(rng.uniform(*FIRST_STALL_S))
        while time.monotonic() < self.deadline - STALL_S[1]:
            seconds = rng.uniform(*STALL_S)
            over: asyncio.Future[None] = loop.create_future()

            def block(seconds: float = seconds, over: asyncio.Future[None] = over) -> None:
                time.sleep(seconds)  # deliberate: nothing on this loop runs meanwhile
                # Before any callback that ran late: the audit sees the gap first.
                watcher.woke()
                over.set_result(None)

            loop.call_soon(block)
            await over
            self.counts.faults["stall"] += 1
            self.counts.stalled_s += seconds
            await asyncio.sleep(rng.uniform(*STALL_EVERY_S))

    async def judge_held(self) -> None:
        """Judge held outputs against their deadlines (no row comes from a device that holds)."""
        assert self.audit is not None
        assert self.watcher is not None
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.audit.check_due(self.watcher.now())

    async def _corruption_over(self, name: str) -> None:
        # A corrupted B0 in flight lands a moment after the fault ends.
        await asyncio.sleep(0.3)
        assert self.audit is not None
        self._corrupting[name] -= 1
        if self._corrupting[name] <= 0:
            self.audit.ramp_unchecked(name, False)

    async def heal(self, names: list[str]) -> None:
        """Every fault of these devices off (as the sessions' end leaves them)."""
        assert self.fleet is not None
        assert self.watcher is not None
        for name in names:
            watch = self.watcher.devices[name]
            watch.empty_since = None
            self.fleet.radio.fault(name, "clear")
            if self.sims[name].spec.kind == DeviceKind.PILLOW:
                self.fleet.radio.fault(name, "set_occupied", True)
        await asyncio.sleep(0)

    async def check_end(self, names: list[str], label: str) -> None:
        """Every device of the session off soon after its end."""
        assert self.watcher is not None
        started = time.monotonic()
        while not all(self.sims[n].firmware.is_quiet for n in names):
            # A stall meanwhile gives the devices their time again from its end.
            if time.monotonic() > max(started, self.watcher.woke_real()) + QUIET_WAIT_S:
                break
            await asyncio.sleep(0.05)
        for name in names:
            firmware = self.sims[name].firmware
            if not firmware.is_quiet:
                self.watcher.note(
                    f"session {label}: {name} still on after the end: {firmware.outputs}"
                )
            watch = self.watcher.devices[name]
            watch.in_session = False
            watch.stop_pressed_at = None

    def check_history(self, result: SessionResult, label: str) -> None:
        """The finished session is in the history with its outcome."""
        assert self.store is not None
        if result.session_id is None:
            self.counts.lost_rows.append(f"session {label}: no history row")
            return
        try:
            record = self.store.get_session(result.session_id)
        except StoreError as err:
            self.counts.lost_rows.append(f"session {label}: {err}")
            return
        if record.outcome != result.outcome or record.ended_at is None:
            self.counts.lost_rows.append(
                f"session {label}: history says {record.outcome}, it ended {result.outcome}"
            )

    def final_history_check(self) -> None:
        """No session in the store without its end, no more rows than sessions."""
        assert self.store is not None
        rows = self.store.list_sessions(None)
        unfinished = [r.id for r in rows if r.ended_at is None]
        for session_id in unfinished:
            self.counts.lost_rows.append(f"history row {session_id} has no end")
        played = self.counts.sessions - self.counts.refused
        if len(rows) != played:
            self.counts.lost_rows.append(f"{len(rows)} history rows for {played} sessions")

    # -- the whole run -------------------------------------------------------------------------

    async def run(self, seconds: float) -> dict[str, Any]:
        """Run every set until the time is up; the counts."""
        started = time.monotonic()
        await self.start()
        gc.collect()
        rss_start = rss_mib()
        try:
            names = list(self.devices)
            sets = [names[i : i + SET_SIZE] for i in range(0, len(names), SET_SIZE)]
            self.deadline = time.monotonic() + seconds
            loop = asyncio.get_running_loop()
            helpers = [loop.create_task(self.progress()), loop.create_task(self.judge_held())]
            stalls = loop.create_task(self.stalls())
            try:
                await asyncio.gather(*(self.run_set(s, i + 1) for i, s in enumerate(sets)))
            finally:
                stalls.cancel()
                for task in helpers:
                    task.cancel()
                for task in (stalls, *helpers):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            assert self.audit is not None
            assert self.watcher is not None
            # Whatever was held at the end is judged too.
            self.audit.check_due(self.watcher.now() + 1e6)
            self.final_history_check()
        finally:
            await self.close()
        gc.collect()
        assert self.watcher is not None
        assert self.audit is not None
        unsafe = [*self.audit.problems, *self.watcher.unsafe]
        return {
            "seconds": round(time.monotonic() - started, 1),
            "devices": self.args.devices,
            "seed": self.args.seed,
            "speed": self.speed,
            "sessions": self.counts.sessions,
            "refused": self.counts.refused,
            "faults": dict(sorted(self.counts.faults.items())),
            "faults_total": sum(self.counts.faults.values()),
            "stalls": self.counts.faults.get("stall", 0),
            "stalled_s": round(self.counts.stalled_s, 2),
            "gaps_judged": self.audit.gaps,
            "cap_changes": {
                "lowered": self.counts.faults.get("cap_lowered", 0),
                "raised": self.counts.faults.get("cap_raised", 0),
            },
            "outcomes": {o.value: self.counts.outcomes.get(o.value, 0) for o in Outcome},
            "outputs_checked": self.audit.rows,
            "unsafe_outputs": len(unsafe),
            "lost_history_rows": len(self.counts.lost_rows),
            "rss_start_mib": rss_start,
            "rss_end_mib": rss_mib(),
            "problems": (unsafe + self.counts.lost_rows)[:10],
        }

    async def progress(self) -> None:
        """A line every ten seconds, so a long run shows it is alive."""
        while True:
            await asyncio.sleep(10.0)
            print(
                f"soak: {self.counts.sessions} sessions, "
                f"{sum(self.counts.faults.values())} faults, "
                f"{int(self.deadline - time.monotonic())} s left",
                file=sys.stderr,
                flush=True,
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default 1)")
    length.add_argument("--seconds", type=float, help="how long to run, in seconds")
    parser.add_argument("--devices", type=int, default=6, help="simulated devices (default 6)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--speed", type=float, default=20.0, help="session clock speed-up (default 20)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log warnings too")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error("--devices must be at least 1")
    if not 1.0 <= args.speed <= 100.0:
        parser.error("--speed must be 1..100")
    seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes or 1.0)
    if seconds <= 0:
        parser.error("the run must last more than 0 s")
    args.run_seconds = seconds
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 on an unsafe output or a lost history row."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    soak = Soak(args)
    result = asyncio.run(soak.run(args.run_seconds))
    print(
        f"sessions {result['sessions']}, faults {result['faults_total']} {result['faults']}, "
        f"outcomes {result['outcomes']}, outputs checked {result['outputs_checked']}, "
        f"unsafe outputs {result['unsafe_outputs']}, lost history rows "
        f"{result['lost_history_rows']}, memory {result['rss_start_mib']} -> "
        f"{result['rss_end_mib']} MiB"
    )
    print(
        f"new faults: {result['stalls']} stalls (a blocked loop, {result['stalled_s']} s in all, "
        f"for a stopped daemon), caps lowered {result['cap_changes']['lowered']}, "
        f"raised {result['cap_changes']['raised']}; a connection flood needs a control socket: "
        "tests/reliability/test_fault_matrix.py"
    )
    for problem in result["problems"]:
        print(f"  {problem}")
    print(json.dumps(result, sort_keys=True), flush=True)
    return 1 if result["unsafe_outputs"] or result["lost_history_rows"] else 0


if __name__ == "__main__":
    sys.exit(main())
