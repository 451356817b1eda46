"""Emergency stop: from the command, the API or MQTT until every simulated device's output is zero.

The simulator server (bench/_harness.py, its own process) serves the devices
and notes, per device, the monotonic time its outputs all became zero (the
firmware's ``is_quiet``, at the arrival of the bytes that made it so). Each
trial starts a session (``collar-zone`` by default) through the daemon, waits
until every device is on, takes the time, gives the emergency stop and waits
until every device is quiet; the figure is the slowest device.

Front ends: ``cli`` runs ``massaged emergency-stop`` as a new process (as a
user's script or keyboard shortcut would; its interpreter start-up counts),
``api`` calls the control socket (controller.control.call), ``mqtt``
publishes to ``massaged/bridge/request/emergency_stop`` on a mosquitto of its
own (needs controller.mqtt.runtime; skipped with the reason otherwise).
Baseline, in the same run and on the same simulated devices, before the
daemon starts: drivers in this process, each stop() called directly, no front
end. The daemon runs with ``--speed`` (default 10) only so that the start ramp
of each trial's session is short; the stop path does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h
from devices.capabilities import DeviceKind
from devices.outputs import (
    BeltOutput,
    ButterflyOutput,
    EmsChannelOutput,
    Output,
    PillowOutput,
)

logger = logging.getLogger(__name__)

FRONT_ENDS = ("cli", "api", "mqtt")
ON_TIMEOUT_S = 10.0
"""Longest wait for every device to be on before a trial stops them anyway."""
QUIET_TIMEOUT_S = 10.0
"""Longest wait for every device to be quiet after a stop (a miss is reported, not hidden)."""
POLL_S = 0.02
"""How often the simulator is asked (the figure comes from its timestamps, not the poll)."""
NOTHING = "none"
"""A channel name that matches nothing: the simulator server keeps no rows, only quiet times."""


async def wait_on(sim: h.SimServer, timeout: float = ON_TIMEOUT_S) -> int:
    """Wait until every device puts something out; how many do."""
    deadline = time.monotonic() + timeout
    on = 0
    while time.monotonic() < deadline:
        quiet = await sim.quiet_since()
        on = sum(1 for since in quiet.values() if since is None)
        if on == len(quiet):
            return on
        await asyncio.sleep(POLL_S)
    return on


async def wait_quiet(sim: h.SimServer, t0: float, timeout: float = QUIET_TIMEOUT_S) -> float | None:
    """Seconds from t0 until the last device went quiet; None if one never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        quiet = await sim.quiet_since()
        if all(since is not None for since in quiet.values()):
            return max(max(0.0, since - t0) for since in quiet.values() if since is not None)
        await asyncio.sleep(POLL_S)
    return None


def on_output(kind: DeviceKind, motors: int) -> Output:
    """Something clearly on, within every cap."""
    if kind == DeviceKind.BELT:
        return BeltOutput(levels=(120,) * motors)
    if kind == DeviceKind.PILLOW:
        return PillowOutput(speed=2)
    channel = EmsChannelOutput(strength=20, frequency=100, intensity=80)
    return ButterflyOutput(a=channel, b=channel)


async def baseline(sim: h.SimServer, radio: Path, trials: int) -> tuple[list[float], int]:
    """Direct driver stop() calls in this process; gaps and misses."""
    drivers = [h.make_driver(d, radio) for d in sim.devices]
    gaps: list[float] = []
    missed = 0
    try:
        async with asyncio.timeout(h.START_TIMEOUT_S):
            await asyncio.gather(*(d.connect() for d in drivers))
        for _ in range(trials):
            for d in drivers:
                d.renew_lease(ON_TIMEOUT_S + QUIET_TIMEOUT_S)
                await d.apply(on_output(d.kind, len(d.capabilities.motors)))
            await wait_on(sim)
            t0 = time.monotonic()
            await asyncio.gather(*(d.stop() for d in drivers))
            gap = await wait_quiet(sim, t0)
            if gap is None:
                missed += 1
            else:
                gaps.append(gap)
    finally:
        await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)
    return gaps, missed


class FrontEnd:
    """One way of giving the emergency stop."""

    def __init__(self, name: str, ws: h.Workspace, mqtt: Any = None) -> None:
        self.name = name
        self.ws = ws
        self.mqtt = mqtt

    async def stop(self) -> asyncio.Task[Any]:
        """Give the stop now; the task finishes when the front end is done with it."""
        loop = asyncio.get_running_loop()
        if self.name == "cli":
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller",
                "emergency-stop",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self.ws.env,
                cwd=str(h.REPO),
            )
            return loop.create_task(proc.wait())
        if self.name == "api":
            from controller import control

            return loop.create_task(control.call(self.ws.socket, "emergency_stop"))
        assert self.mqtt is not None
        return loop.create_task(
            self.mqtt.publish("massaged/bridge/request/emergency_stop", "{}", qos=1)
        )


async def trials_through(
    front: FrontEnd, sim: h.SimServer, trials: int, program: str
) -> tuple[list[float], int, int]:
    """Run and emergency-stop sessions through one front end; gaps, misses, trials not all on."""
    from controller import control

    gaps: list[float] = []
    missed = partial = 0
    for _ in range(trials):
        answer = await control.call(
            front.ws.socket, "run", {"program": program, "well_today": True}
        )
        if answer.get("status") != "ok":
            raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
        if await wait_on(sim) < len(sim.devices):
            partial += 1
        t0 = time.monotonic()
        task = await front.stop()
        gap = await wait_quiet(sim, t0)
        async with asyncio.timeout(30.0):
            await task
        if gap is None:
            missed += 1
        else:
            gaps.append(gap)
        await h.wait_session_over(front.ws.socket)
    return gaps, missed, partial


async def measure(count: int, args: argparse.Namespace) -> h.Json:
    """Baseline and every front end for one device count."""
    ws = h.Workspace()
    broker: h.Broker | None = None
    sim = h.SimServer(ws, h.device_specs(count), channels={NOTHING})
    daemon = None
    mqtt_client: Any = None
    fronts = list(args.front_ends)
    skipped: dict[str, str] = {}
    results: dict[str, h.Json] = {}
    try:
        if "mqtt" in fronts:
            reason = h.bridge_available()
            binary = h.find_mosquitto()
            if reason is None and binary is not None:
                broker = h.broker(ws, binary, nodelay=args.broker_nodelay)
                await broker.astart()
            else:
                skipped["mqtt"] = reason or "no broker"
                fronts.remove("mqtt")
        await sim.start()
        base_gaps, base_missed = await baseline(sim, ws.radio, args.trials)
        ws.write_config(h.daemon_config(mqtt_port=broker.port if broker else None))
        daemon = await h.spawn_controller(
            ws, "daemon", "daemon", "--simulator", "--auto-pair", "--speed", f"{args.speed:g}"
        )
        await h.wait_devices_up(ws.socket, count)
        if broker is not None:
            import aiomqtt

            mqtt_client = aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-stop")
            await mqtt_client.__aenter__()
            await _wait_bridge_online(mqtt_client)
        for name in fronts:
            gaps, missed, partial = await trials_through(
                FrontEnd(name, ws, mqtt_client), sim, args.trials, args.program
            )
            results[name] = {**h.summarize_ms(gaps), "missed": missed, "not_all_on": partial}
    finally:
        if mqtt_client is not None:
            with contextlib.suppress(Exception):
                await mqtt_client.__aexit__(None, None, None)
        await h.stop_process(daemon)
        await sim.close()
        if broker is not None:
            await broker.astop()
        ws.close()
    base = {**h.summarize_ms(base_gaps), "missed": base_missed}
    for stats in results.values():
        stats["ratio_p50"] = h.ratio(stats["p50_ms"], base["p50_ms"])
        stats["ratio_p99"] = h.ratio(stats["p99_ms"], base["p99_ms"])
    h.say(f"{count} device(s), {args.trials} trial(s) per front end")
    h.say(f"  baseline (driver.stop() in-process): {h.fmt(base)}")
    for name, stats in results.items():
        h.say(f"  {name:<4}: {h.fmt(stats)}, missed {stats['missed']}")
    for name, why in skipped.items():
        h.say(f"  {name:<4}: skipped: {why}")
    return {
        "devices": count,
        "broker_nodelay": args.broker_nodelay,
        "baseline": base,
        "front_ends": results,
        "skipped": skipped,
    }


async def _wait_bridge_online(client: Any, timeout: float = h.START_TIMEOUT_S) -> None:
    """Wait for the bridge's retained online state (it has subscribed to requests by then)."""
    await client.subscribe("massaged/bridge/state", qos=1)
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if b"online" in bytes(message.payload):
                break
    await client.unsubscribe("massaged/bridge/state")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="Emergency stop from the command line, the local API and MQTT until "
        "every simulated device's output is zero, against direct driver stop() calls."
    )
    p.add_argument(
        "--devices",
        type=h.parse_counts,
        default=[3, 64],
        help="device counts (3: belt, pillow, butterfly; else belts); default 3,64",
    )
    p.add_argument("--trials", type=int, default=30, help="stops per front end (30)")
    p.add_argument(
        "--front-ends",
        type=h.comma_list,
        default=list(FRONT_ENDS),
        help="cli,api,mqtt (default all)",
    )
    p.add_argument("--program", default="collar-zone", help="the session each trial stops")
    p.add_argument("--speed", type=float, default=1.0, help="the daemon's --speed (1)")
    p.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="mosquitto with set_tcp_nodelay true (default: as installed, Nagle on)",
    )
    args = p.parse_args(argv)
    unknown = set(args.front_ends) - set(FRONT_ENDS)
    if unknown:
        p.error(f"unknown front end(s): {', '.join(sorted(unknown))}")
    if args.trials < 1:
        p.error("--trials must be at least 1")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """Every device count, one after the other."""
    began = time.monotonic()
    cases = [await measure(count, args) for count in args.devices]
    return {
        "benchmark": "stop",
        "machine": h.machine(),
        "trials": args.trials,
        "program": args.program,
        "elapsed_s": round(time.monotonic() - began, 1),
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
