"""Emergency stop under a flood of idle connections to the control socket, against no flood.

Issue 11's attack: thousands of connections opened to the control socket and
held silent. Each trial starts a session (``collar-zone`` by default) through
the daemon, waits until every simulated device is on, then, in the flooded
cases, starts a flooder process that opens connections as fast as it can and
holds them (thousands, far more than the daemon has descriptors), waits until
it has opened ``--ready`` of them, and gives the emergency stop from the
command line (``massaged emergency-stop``, a new process, as a user's script
or shortcut would). The figure is the time from just before that process
starts until the last device's outputs were all zero, from the simulator's
own timestamps (bench/stop.py's method), also per device kind; the command's
own exit is reported too.

Cases, one daemon for all:

- ``quiet``: no flood (the daemon's descriptor limit as inherited);
- ``flood``: the daemon's descriptor limit lowered to ``--limit`` (256), far
  above its connection cap: the cap and the eviction of idle connections let
  the stop in;
- ``exhausted``: the limit lowered to 8 above what the daemon has open, below
  the cap: the flood runs it out of descriptors, and the reserve descriptor
  lets the stop in.

Run as ``flood.py flooder --socket PATH --ready N`` it is the flooder itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h
from bench.stop import FrontEnd, wait_on, wait_quiet

CASES = ("quiet", "flood", "exhausted")
HELD = 2000
"""The flooder holds at most this many connections (closing the oldest beyond)."""
EXHAUSTED_HEADROOM = 8
"""Descriptors above those open the daemon keeps in the exhausted case."""
THIS = Path(__file__).resolve()


# -- the flooder (its own process, so that it does not share this one's interpreter) -------


def flooder(path: str, ready: int) -> int:
    """Open connections as fast as possible and hold them; 'ready' once that many are open."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    held: deque[socket.socket] = deque()
    opened = 0
    said = False
    while not stopping:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(path)
        except OSError:  # the backlog is full: the daemon is behind
            client.close()
            time.sleep(0.0005)
            continue
        opened += 1
        held.append(client)
        if len(held) > HELD:
            held.popleft().close()
        if not said and opened >= ready:
            said = True
            print("ready", flush=True)
    print(f"opened {opened}", flush=True)
    return 0


async def start_flood(ws: h.Workspace, ready: int) -> asyncio.subprocess.Process:
    """A flooder process, once it has opened ready connections."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(THIS),
        "flooder",
        "--socket",
        str(ws.socket),
        "--ready",
        str(ready),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=ws.log("flooder"),
        cwd=str(h.REPO),
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(h.START_TIMEOUT_S):
            line = await proc.stdout.readline()
    except BaseException:
        await h.stop_process(proc)
        raise
    if line.strip() != b"ready":
        await h.stop_process(proc)
        raise RuntimeError(f"the flooder did not open {ready} connections: {line!r}")
    return proc


async def stop_flood(proc: asyncio.subprocess.Process) -> int:
    """End the flooder; how many connections it opened."""
    assert proc.stdout is not None
    await h.stop_process(proc)
    text = (await proc.stdout.read()).decode()
    for line in text.splitlines():
        if line.startswith("opened "):
            return int(line.split()[1])
    return 0


# -- the measurement ---------------------------------------------------------------------


def set_descriptor_limit(pid: int, soft: int | None) -> int:
    """The process's RLIMIT_NOFILE soft limit (None: its hard limit); the limit set."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    value = hard if soft is None else soft
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (value, hard))
    return value


def open_descriptors(pid: int) -> int:
    """How many descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Trial:
    """One session stopped."""

    quiet: dict[str, float | None]
    """Per device kind: seconds from the request until its outputs were all zero."""
    exited: float
    """Seconds from the request until the command's process ended."""
    code: int
    opened: int
    """Connections the flood opened (0: no flood)."""

    @property
    def slowest(self) -> float | None:
        """Seconds until every device was at zero; None when one never was."""
        values = list(self.quiet.values())
        if not values or None in values:
            return None
        return max(v for v in values if v is not None)


async def trial(front: FrontEnd, sim: h.SimServer, program: str, ready: int | None) -> Trial:
    """Start a session, flood if asked, give the emergency stop, and time it."""
    from controller import control

    # well_today: the person's word that today is a day for massage (controller.readiness).
    request = {"program": program, "well_today": True}
    answer = await control.call(front.ws.socket, "run", request)
    if answer.get("status") != "ok":
        raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
    await wait_on(sim)
    flood = await start_flood(front.ws, ready) if ready else None
    opened = 0
    kinds = {d["id"]: d["kind"] for d in sim.devices}
    try:
        t0 = time.monotonic()
        task = await front.stop()
        ended: list[float] = []
        task.add_done_callback(lambda _: ended.append(time.monotonic()))
        await wait_quiet(sim, t0)
        since = await sim.quiet_since()
        async with asyncio.timeout(30.0):
            code = await task
    finally:
        if flood is not None:
            opened = await stop_flood(flood)
    await h.wait_session_over(front.ws.socket)
    quiet = {kinds[d]: (None if t is None else max(0.0, t - t0)) for d, t in since.items()}
    return Trial(quiet, ended[0] - t0, int(code), opened)


async def measure(args: argparse.Namespace) -> h.Json:
    """Every case on one daemon over the three simulated devices."""
    ws = h.Workspace()
    sim = h.SimServer(ws, h.device_specs(3), channels={"none"})
    daemon = None
    results: dict[str, h.Json] = {}
    try:
        await sim.start()
        ws.write_config(h.daemon_config())
        daemon = await h.spawn_controller(ws, "daemon", "daemon", "--simulator", "--auto-pair")
        await h.wait_devices_up(ws.socket, 3)
        front = FrontEnd("cli", ws)
        for case in args.cases:
            if case == "quiet":
                limit = set_descriptor_limit(daemon.pid, None)
            elif case == "flood":
                limit = set_descriptor_limit(daemon.pid, args.limit)
            else:
                limit = open_descriptors(daemon.pid) + EXHAUSTED_HEADROOM
                set_descriptor_limit(daemon.pid, limit)
            ready = None if case == "quiet" else max(args.ready, 2 * limit)
            trials = [await trial(front, sim, args.program, ready) for _ in range(args.trials)]
            slowest = [t.slowest for t in trials]
            per_kind = {
                kind: h.summarize_ms(v for t in trials if (v := t.quiet.get(kind)) is not None)
                for kind in sorted({k for t in trials for k in t.quiet})
            }
            results[case] = {
                "descriptor_limit": limit,
                "devices_quiet": h.summarize_ms(s for s in slowest if s is not None),
                "per_kind": per_kind,
                "command_exit": h.summarize_ms(t.exited for t in trials),
                "missed": sum(s is None for s in slowest),
                "command_failed": sum(t.code != 0 for t in trials),
                "connections_opened": sum(t.opened for t in trials),
            }
        set_descriptor_limit(daemon.pid, None)
    finally:
        await h.stop_process(daemon)
        await sim.close()
        ws.close()
    base = results.get("quiet", {}).get("devices_quiet", {})
    for stats in results.values():
        quiet = stats["devices_quiet"]
        stats["ratio_p50"] = h.ratio(quiet["p50_ms"], base.get("p50_ms"))
        stats["ratio_p99"] = h.ratio(quiet["p99_ms"], base.get("p99_ms"))
    h.say(f"3 devices, {args.trials} trial(s) per case, massaged emergency-stop")
    for case, stats in results.items():
        h.say(
            f"  {case:<9} (limit {stats['descriptor_limit']}, "
            f"{stats['connections_opened']} connections opened): "
            f"every device at zero {h.fmt(stats['devices_quiet'])}; "
            f"command done {h.fmt(stats['command_exit'])}; "
            f"missed {stats['missed']}, failed {stats['command_failed']}"
        )
        for kind, kind_stats in stats["per_kind"].items():
            h.say(f"    {kind:<9} at zero {h.fmt(kind_stats)}")
    return {"cases": results}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="Emergency stop from the command line under a flood of idle connections "
        "to the control socket, against the same without a flood."
    )
    p.add_argument("--trials", type=int, default=20, help="stops per case (20)")
    p.add_argument(
        "--cases",
        type=h.comma_list,
        default=list(CASES),
        help="quiet,flood,exhausted (default all)",
    )
    p.add_argument("--limit", type=int, default=256, help="the daemon's descriptors when flooded")
    p.add_argument(
        "--ready",
        type=int,
        default=1000,
        help="connections the flood has opened before the stop (at least twice the limit)",
    )
    p.add_argument("--program", default="collar-zone", help="the session each trial stops")
    args = p.parse_args(argv)
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if args.trials < 1:
        p.error("--trials must be at least 1")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """The benchmark's JSON result."""
    began = time.monotonic()
    result = await measure(args)
    return {
        "benchmark": "flood",
        "machine": h.machine(),
        "trials": args.trials,
        "program": args.program,
        "elapsed_s": round(time.monotonic() - began, 1),
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, as ``flooder``, the flood) and print its JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["flooder"]:
        p = argparse.ArgumentParser(prog="flood.py flooder")
        p.add_argument("--socket", required=True)
        p.add_argument("--ready", type=int, required=True)
        args = p.parse_args(argv[1:])
        return flooder(args.socket, args.ready)
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
