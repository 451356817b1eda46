"""A frozen or killed daemon: how long each simulated device keeps running.

The simulator server (bench/_harness.py, its own process) notes, per device,
the monotonic time its outputs all became zero (the firmware's ``is_quiet``).
Each trial starts a session (``collar-zone``) through the daemon, waits until
every device is on, takes the time and then either stops the daemon with
SIGSTOP (a frozen process: its BLE links stay up, its loop beats no more) or
kills it with SIGKILL (a dead process: on Linux BlueZ keeps its links up, and
the simulated radio does the same). The figure per device is the time from the
signal until that device was quiet. What bounds it: the belt's own 1 s
watchdog, the butterfly's 100 ms rule, and for the pillow (no watchdog of its
own) the host guard, which ends the daemon's BLE links through the radio's
``device_disconnect`` (BlueZ's ``Device1.Disconnect``) after 1.5 s without a
heartbeat or at once when the daemon dies.

Baseline, in the same run on the same devices, before the daemon starts:
drivers in this process turn every device on, then the link of every device
is cut (the radio's ``link_down`` fault): each device's own reaction to a
plain link drop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h
from bench.stop import NOTHING, on_output, wait_on

logger = logging.getLogger(__name__)

QUIET_TIMEOUT_S = 15.0
"""Longest wait for every device to be quiet after the signal (a miss is reported)."""
POLL_S = 0.02
"""How often the simulator is asked (the figure comes from its timestamps, not the poll)."""
SPECS = ["belt", "belt:ble", "pillow", "butterfly"]
"""A serial belt, a BLE belt, the pillow and the butterfly."""


async def wait_each_quiet(
    sim: h.SimServer, t0: float, timeout: float = QUIET_TIMEOUT_S
) -> dict[str, float | None]:
    """Per device: seconds from t0 until it was quiet (None if it never was in time)."""
    deadline = time.monotonic() + timeout
    quiet: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        quiet = await sim.quiet_since()
        if all(since is not None for since in quiet.values()):
            break
        await asyncio.sleep(POLL_S)
    return {d: None if since is None else max(0.0, since - t0) for d, since in quiet.items()}


class Figures:
    """Per-device gaps and misses for one way of losing the host."""

    def __init__(self) -> None:
        self.gaps: dict[str, list[float]] = {}
        self.missed: dict[str, int] = {}
        self.not_all_on = 0

    def add(self, gaps: dict[str, float | None]) -> None:
        """One trial's gaps."""
        for device, gap in gaps.items():
            if gap is None:
                self.missed[device] = self.missed.get(device, 0) + 1
            else:
                self.gaps.setdefault(device, []).append(gap)

    def summary(self) -> h.Json:
        """Per device: n, p50, p99, max, mean in ms, and misses."""
        devices = sorted(set(self.gaps) | set(self.missed))
        out: h.Json = {
            d: {**h.summarize_ms(self.gaps.get(d, [])), "missed": self.missed.get(d, 0)}
            for d in devices
        }
        out["not_all_on"] = self.not_all_on
        return out


async def baseline(sim: h.SimServer, radio: Path, trials: int) -> Figures:
    """Each device's own reaction to its link being cut, drivers in this process."""
    from simulator.ble.wire import radio_request

    figures = Figures()
    for _ in range(trials):
        drivers = [h.make_driver(d, radio) for d in sim.devices]
        try:
            async with asyncio.timeout(h.START_TIMEOUT_S):
                await asyncio.gather(*(d.connect() for d in drivers))
            for d in drivers:
                d.renew_lease(QUIET_TIMEOUT_S)
                await d.apply(on_output(d.kind, len(d.capabilities.motors)))
            if await wait_on(sim) < len(sim.devices):
                figures.not_all_on += 1
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    radio_request(radio, "fault", device=d["id"], name="link_down")
                    for d in sim.devices
                )
            )
            figures.add(await wait_each_quiet(sim, t0))
        finally:
            for d in sim.devices:
                with contextlib.suppress(Exception):
                    await radio_request(radio, "fault", device=d["id"], name="link_up")
            await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)
    return figures


async def start_daemon(ws: h.Workspace, count: int, *first: str) -> asyncio.subprocess.Process:
    """A daemon on the simulator, every device up."""
    daemon = await h.spawn_controller(ws, "daemon", "daemon", "--simulator", *first)
    await h.wait_devices_up(ws.socket, count)
    return daemon


async def session_on(ws: h.Workspace, sim: h.SimServer, program: str) -> bool:
    """Start a session; True once every device is on."""
    from controller import control

    answer = await control.call(ws.socket, "run", {"program": program, "well_today": True})
    if answer.get("status") != "ok":
        raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
    return await wait_on(sim, timeout=15.0) == len(sim.devices)


async def stalls(
    ws: h.Workspace, sim: h.SimServer, daemon: asyncio.subprocess.Process, args: argparse.Namespace
) -> Figures:
    """SIGSTOP mid-session, measure, SIGCONT, end the session."""
    from controller import control

    figures = Figures()
    for _ in range(args.trials):
        if not await session_on(ws, sim, args.program):
            figures.not_all_on += 1
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGSTOP)
        try:
            figures.add(await wait_each_quiet(sim, t0))
        finally:
            daemon.send_signal(signal.SIGCONT)
        with contextlib.suppress(Exception):
            await control.call(ws.socket, "stop", timeout=10.0)
        await h.wait_session_over(ws.socket, timeout=30.0)
        await h.wait_devices_up(ws.socket, len(sim.devices))
    return figures


async def kills(
    ws: h.Workspace, sim: h.SimServer, daemon: asyncio.subprocess.Process, args: argparse.Namespace
) -> tuple[Figures, asyncio.subprocess.Process]:
    """SIGKILL mid-session, measure, start a new daemon for the next trial; the figures and
    the last daemon (the killed one after the last trial: nothing more is measured)."""
    figures = Figures()
    for trial in range(args.trials):
        if not await session_on(ws, sim, args.program):
            figures.not_all_on += 1
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGKILL)
        figures.add(await wait_each_quiet(sim, t0))
        await daemon.wait()
        if trial + 1 < args.trials:
            daemon = await start_daemon(ws, len(sim.devices))
    return figures, daemon


async def run(args: argparse.Namespace) -> h.Json:
    """Baseline, stalls and kills on one set of simulated devices."""
    ws = h.Workspace()
    sim = h.SimServer(ws, list(args.device or SPECS), channels={NOTHING})
    daemon: asyncio.subprocess.Process | None = None
    try:
        await sim.start()
        base = await baseline(sim, ws.radio, args.trials)
        ws.write_config(h.daemon_config())
        daemon = await start_daemon(ws, len(sim.devices), "--auto-pair")
        stopped = await stalls(ws, sim, daemon, args)
        killed, daemon = await kills(ws, sim, daemon, args)
    finally:
        await h.stop_process(daemon)
        await sim.close()
        ws.close()
    result = {
        "benchmark": "stall",
        "machine": h.machine(),
        "trials": args.trials,
        "program": args.program,
        "baseline_link_drop": base.summary(),
        "sigstop": stopped.summary(),
        "sigkill": killed.summary(),
    }
    h.say(f"{args.trials} trial(s) each; ms from the event until the device was quiet")
    for name in ("baseline_link_drop", "sigstop", "sigkill"):
        h.say(f"  {name}:")
        for device, stats in result[name].items():
            if isinstance(stats, dict):
                h.say(f"    {device:<12} {h.fmt(stats)}, missed {stats['missed']}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=int, default=5, help="trials per way (default 5)")
    p.add_argument("--program", default="collar-zone", help="the session's program")
    p.add_argument(
        "--device",
        action="append",
        help=f"a simulator device spec (repeatable; default {' '.join(SPECS)})",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
