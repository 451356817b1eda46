"""Timing: how late each scheduled output change reaches the simulated device, against a bare loop.

For each device count the simulator server (bench/_harness.py, its own
process) serves the devices on real endpoints: 3 means a serial VB1 belt on a
pseudo-terminal plus an SP1 pillow and an EB1 butterfly on the simulated BLE
radio; any other count means that many serial belts on pseudo-terminals (the
realistic way to reach 64 or 256 devices: one pty and one firmware loop each).

1. The session runner (controller.session.SessionRunner, through the safety
   layer and the real drivers and links) plays a synthetic plan that changes
   every device's output every --interval seconds, all devices at the same
   instants (one program on many devices: the worst case).
2. The baseline: a bare asyncio loop in the same process writes the same
   frames (encoded with the vendors' codecs) to the same endpoints on the same
   schedule, with no runner, safety layer or driver.

Each cue is paired with the firmware's receipt of its output (the arrival
time of the bytes, which the simulator's recorder hook is given) by value:
consecutive cues always differ, so the first change to the expected value
after the scheduled time (start + cue.t / speed) is that cue's. The gap is
receipt - scheduled. With 64 or more devices this process is pinned to one
CPU (--cpu) and the simulator to another when there is one.

The headline figures cover every device. The EB1 butterfly has no immediate
command, but its driver writes a B0 with a new target at once (restarting its
90 ms cadence), so its cues are timed like the others; each kind's figures are
also printed on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import logging
import os
import sys
import time
import tty
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h
from devices.capabilities import Capabilities, DeviceKind, KneadDirection
from devices.outputs import (
    BeltOutput,
    ButterflyOutput,
    EmsChannelOutput,
    Output,
    PillowOutput,
)
from devices.protocols import eb1, sp1, vb1
from programs.timeline import Cue, DeviceTimeline, SessionPlan, StepSpan

logger = logging.getLogger(__name__)

BELT_LEVELS = tuple(40 + 8 * i for i in range(20))
"""Belt levels the cues cycle through: 20 distinct values, all below the 0.8 cap (204)."""
PILLOW_SPEEDS = (1, 2, 3)
EMS_STRENGTH = 20
"""Held strength of both EMS channels; below the 0.5 cap, reached by the ramp in the warm-up."""
EMS_FREQUENCY = 100
EMS_INTENSITIES = (50, 60, 70, 80, 90, 100)
"""Waveform intensities the cues cycle through: output_a = strength x intensity / 100."""
LEAD_S = 0.3
"""The bare loop starts this long after its set-up, so its first cue is not late already."""
EARLY_TOLERANCE_S = 0.001
"""A receipt this much before its schedule still counts (it cannot really be early)."""
CHANNELS = {"motor1", "speed", "output_a"}


# -- the plan -----------------------------------------------------------------------


def cue_output(kind: DeviceKind, k: int, motors: int = 6) -> Output:
    """The output of cue k for a device of this kind."""
    if kind == DeviceKind.BELT:
        return BeltOutput(levels=(BELT_LEVELS[k % len(BELT_LEVELS)],) * motors)
    if kind == DeviceKind.PILLOW:
        return PillowOutput(speed=PILLOW_SPEEDS[k % len(PILLOW_SPEEDS)])
    intensity = EMS_INTENSITIES[k % len(EMS_INTENSITIES)]
    channel = EmsChannelOutput(strength=EMS_STRENGTH, frequency=EMS_FREQUENCY, intensity=intensity)
    return ButterflyOutput(a=channel, b=channel)


def expected(kind: DeviceKind, k: int) -> tuple[str, int, int]:
    """(channel, value, cycle length) the firmware shows once cue k has arrived."""
    if kind == DeviceKind.BELT:
        return "motor1", BELT_LEVELS[k % len(BELT_LEVELS)], len(BELT_LEVELS)
    if kind == DeviceKind.PILLOW:
        return "speed", PILLOW_SPEEDS[k % len(PILLOW_SPEEDS)], len(PILLOW_SPEEDS)
    intensity = EMS_INTENSITIES[k % len(EMS_INTENSITIES)]
    return "output_a", round(EMS_STRENGTH * intensity / 100), len(EMS_INTENSITIES)


def off_output(kind: DeviceKind, motors: int = 6) -> Output:
    """All off."""
    if kind == DeviceKind.BELT:
        return BeltOutput.off(motors)
    if kind == DeviceKind.PILLOW:
        return PillowOutput.off()
    return ButterflyOutput.off()


def build_plan(devices: dict[str, Capabilities], cues: int, interval: float) -> SessionPlan:
    """A plan that changes every device's output at every multiple of interval."""
    duration = round(cues * interval, 6)
    timelines = {}
    for name, caps in devices.items():
        motors = len(caps.motors) or 6
        items = [
            Cue(t=round(k * interval, 6), output=cue_output(caps.kind, k, motors), step=0)
            for k in range(cues)
        ]
        items.append(Cue(t=duration, output=off_output(caps.kind, motors), step=0))
        timelines[name] = DeviceTimeline(device=name, capabilities=caps, cues=items)
    span = StepSpan(0, "vibration", "collar_zone", "timing benchmark", 0.0, duration)
    return SessionPlan("bench-timing", "timing benchmark", "adult", duration, [span], timelines)


# -- pairing cues with receipts -----------------------------------------------------------


@dataclass
class Pairing:
    """Gaps (seconds) by device kind, and cues whose output never arrived."""

    gaps: dict[str, list[float]]
    missed: int
    expected: int

    def of(self, kinds: Sequence[str]) -> list[float]:
        """Every gap of these kinds."""
        return [g for kind in kinds for g in self.gaps.get(kind, [])]


def pair(
    devices: list[h.Json],
    start: float,
    cues: int,
    interval: float,
    warmup: float,
    rows: list[tuple[float, str, str, int | str]],
) -> Pairing:
    """Match each measured cue (after the warm-up) with the receipt of its output."""
    by_key: dict[tuple[str, str], list[tuple[float, int | str]]] = defaultdict(list)
    for t, device, channel, value in rows:
        by_key[(device, channel)].append((t, value))
    for series in by_key.values():
        series.sort(key=lambda item: item[0])
    gaps: dict[str, list[float]] = defaultdict(list)
    missed = total = 0
    for desc in devices:
        kind = DeviceKind(desc["kind"])
        for k in range(cues):
            t_plan = k * interval
            if t_plan < warmup:
                continue
            total += 1
            channel, value, cycle = expected(kind, k)
            scheduled = start + t_plan
            series = by_key.get((desc["id"], channel), [])
            times = [t for t, _ in series]
            i = bisect.bisect_left(times, scheduled - EARLY_TOLERANCE_S)
            # The same value comes back only a whole cycle later: look no further.
            horizon = scheduled + cycle * interval
            found = None
            while i < len(series) and series[i][0] < horizon:
                if series[i][1] == value:
                    found = series[i][0]
                    break
                i += 1
            if found is None:
                missed += 1
            else:
                gaps[kind.value].append(found - scheduled)
    return Pairing(dict(gaps), missed, total)


# -- the runner case ---------------------------------------------------------------


async def run_session(
    devices: list[h.Json], radio: Path, cues: int, interval: float
) -> tuple[float, str]:
    """Play the plan with the session runner; its start (monotonic) and outcome."""
    from controller.session import SessionRunner, Timing

    drivers = {d["id"]: h.make_driver(d, radio) for d in devices}
    try:
        async with asyncio.timeout(h.START_TIMEOUT_S):
            await asyncio.gather(*(d.connect() for d in drivers.values()))
        plan = build_plan({n: d.capabilities for n, d in drivers.items()}, cues, interval)
        # No start ramp and no fade: every cue is put out as planned (the caps still apply).
        runner = SessionRunner(plan, drivers, timing=Timing(ramp_s=0.0, fade_s=0.0))
        result = await runner.run()
        started = runner.clock.started_at
        assert started is not None
        return started, result.outcome.value
    finally:
        await asyncio.gather(*(d.close() for d in drivers.values()), return_exceptions=True)


# -- the bare loop -------------------------------------------------------------------


class _BareBelt:
    """A belt's pseudo-terminal, opened raw; answers are read and thrown away."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.seq = vb1.SequenceCounter()
        asyncio.get_running_loop().add_reader(self.fd, self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self.fd, 4096)

    def send(self, output: Output) -> None:
        assert isinstance(output, BeltOutput)
        os.write(self.fd, vb1.encode(vb1.set_levels(self.seq.next(), output.levels)))

    async def hello(self) -> None:
        os.write(self.fd, vb1.encode(vb1.hello(self.seq.next())))

    async def close(self) -> None:
        os.write(self.fd, vb1.encode(vb1.stop(self.seq.next())))
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


class _BareBle:
    """A bleak client on the simulated radio; each write is its own task (never awaited inline)."""

    def __init__(self, desc: h.Json, radio: Path) -> None:
        from bleak import BleakClient

        from simulator.ble.backend import SimBleakClient

        self.kind = DeviceKind(desc["kind"])
        self.client = BleakClient(desc["address"], backend=SimBleakClient, radio=str(radio))
        self.tasks: set[asyncio.Task[None]] = set()
        self.seq = 0

    async def hello(self) -> None:
        await self.client.connect()

    def _write(self, data: bytes) -> None:
        if self.kind == DeviceKind.PILLOW:
            coro = self.client.write_gatt_char(sp1.DATA_UUID, data, response=False)
        else:
            coro = self.client.write_gatt_char(eb1.WRITE_UUID, data, response=True)
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send(self, output: Output) -> None:
        if isinstance(output, PillowOutput):
            direction = KneadDirection(output.direction)
            self._write(sp1.encode(sp1.set_state(output.speed, direction, output.heat)))
            return
        assert isinstance(output, ButterflyOutput)
        ch = output.a
        wave = ((ch.frequency,) * 4, (ch.intensity,) * 4)
        if ch.is_zero:
            wave = (eb1.SILENT_FREQUENCY, eb1.SILENT_INTENSITY)
        b0 = eb1.B0(
            seq=0,
            mode_a=eb1.StrengthMode.SET,
            mode_b=eb1.StrengthMode.SET,
            value_a=ch.strength,
            value_b=output.b.strength,
            freq_a=wave[0],
            intensity_a=wave[1],
            freq_b=wave[0],
            intensity_b=wave[1],
        )
        self._write(eb1.encode(b0))

    async def close(self) -> None:
        self.send(off_output(self.kind))
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=2.0)
        await self.client.disconnect()


async def run_bare(devices: list[h.Json], radio: Path, cues: int, interval: float) -> float:
    """Write the same frames on the same schedule from a bare loop; its start (monotonic)."""
    loop = asyncio.get_running_loop()
    endpoints: list[tuple[DeviceKind, _BareBelt | _BareBle]] = []
    try:
        for desc in devices:
            kind = DeviceKind(desc["kind"])
            ep: _BareBelt | _BareBle
            ep = _BareBelt(desc["address"]) if desc["link"] == "serial" else _BareBle(desc, radio)
            endpoints.append((kind, ep))
            await ep.hello()
        await asyncio.sleep(LEAD_S)  # every INFO in, every link settled
        start = loop.time() + LEAD_S
        for k in range(cues + 1):
            due = start + k * interval
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            for kind, ep in endpoints:
                ep.send(cue_output(kind, k) if k < cues else off_output(kind))
        await asyncio.sleep(0.2)  # the last answers
        return start
    finally:
        for _, ep in endpoints:
            with contextlib.suppress(Exception):
                await ep.close()


# -- one device count ----------------------------------------------------------------------


async def measure(count: int, args: argparse.Namespace) -> h.Json:
    """Runner and bare loop for one device count; the case's figures."""
    pinned = args.pin and count >= args.pin_from
    host_cpu = args.cpu if pinned else None
    sim_cpu = h.other_cpu(args.cpu) if pinned else None
    allowed = h.cpus()
    cues = max(1, round(args.seconds / args.interval))
    ws = h.Workspace()
    sim = h.SimServer(ws, h.device_specs(count), channels=CHANNELS, cpu=sim_cpu)
    try:
        devices = await sim.start()
        h.pin(host_cpu)
        await sim.rows()
        started, outcome = await run_session(devices, ws.radio, cues, args.interval)
        await asyncio.sleep(0.2)
        runner = pair(devices, started, cues, args.interval, args.warmup, await sim.rows())
        bare_start = await run_bare(devices, ws.radio, cues, args.interval)
        await asyncio.sleep(0.2)
        bare = pair(devices, bare_start, cues, args.interval, args.warmup, await sim.rows())
    finally:
        h.unpin(allowed)
        await sim.close()
        ws.close()
    kinds = sorted({d["kind"] for d in devices})
    r_stats = h.summarize_ms(runner.of(kinds))
    b_stats = h.summarize_ms(bare.of(kinds))
    case: h.Json = {
        "devices": count,
        "kinds": {k: sum(1 for d in devices if d["kind"] == k) for k in kinds},
        "host_cpu": host_cpu,
        "sim_cpu": sim_cpu,
        "outcome": outcome,
        "runner": {**r_stats, "missed": runner.missed, "cues": runner.expected},
        "baseline": {**b_stats, "missed": bare.missed, "cues": bare.expected},
        "ratio_p50": h.ratio(r_stats["p50_ms"], b_stats["p50_ms"]),
        "ratio_p99": h.ratio(r_stats["p99_ms"], b_stats["p99_ms"]),
        "by_kind": {
            k: {
                "runner": h.summarize_ms(runner.gaps.get(k, [])),
                "baseline": h.summarize_ms(bare.gaps.get(k, [])),
            }
            for k in kinds
        },
    }
    where = f"host on CPU {host_cpu}, simulator on CPU {sim_cpu}" if pinned else "not pinned"
    h.say(f"{count} device(s) ({where}); {cues} cues each, every {args.interval * 1000:g} ms")
    h.say(f"  runner:   {h.fmt(r_stats)}, missed {runner.missed}/{runner.expected}")
    h.say(f"  baseline: {h.fmt(b_stats)}, missed {bare.missed}/{bare.expected}")
    h.say(f"  ratio p50 {case['ratio_p50']}, p99 {case['ratio_p99']}")
    if len(kinds) > 1:
        for kind in kinds:
            figures = case["by_kind"][kind]
            h.say(f"  {kind + ':':<10} runner {h.fmt(figures['runner'])}")
            h.say(f"  {'':<10} baseline {h.fmt(figures['baseline'])}")
    return case


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="Gap between each scheduled output change and its receipt by the "
        "simulated device: the session runner against a bare asyncio loop.",
    )
    p.add_argument(
        "--devices",
        type=h.parse_counts,
        default=[3, 64, 256],
        help="device counts, comma-separated (3: belt, pillow, butterfly; else belts)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="plan length per case (10)")
    p.add_argument(
        "--interval", type=float, default=0.1, help="seconds between changes (0.1, at most 0.2)"
    )
    p.add_argument(
        "--warmup", type=float, default=1.0, help="seconds left out at the start (EMS ramp)"
    )
    p.add_argument("--cpu", type=int, default=min(h.cpus()), help="the CPU to pin to")
    p.add_argument("--pin-from", type=int, default=64, help="pin from this many devices (64)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="never pin")
    args = p.parse_args(argv)
    if not 0.01 <= args.interval <= 0.2:
        # Above 0.2 s the bare loop would have to feed the belt's watchdog as well.
        p.error("--interval must be 0.01..0.2")
    if args.seconds <= args.warmup:
        p.error("--seconds must be longer than --warmup")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """Every case, one after the other."""
    began = time.monotonic()
    cases = [await measure(count, args) for count in args.devices]
    return {
        "benchmark": "timing",
        "machine": h.machine(),
        "seconds": args.seconds,
        "interval_ms": args.interval * 1000,
        "warmup_s": args.warmup,
        "elapsed_s": round(time.monotonic() - began, 1),
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
