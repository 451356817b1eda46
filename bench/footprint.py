"""Footprint: the daemon's CPU and memory idle and in a session, and how fast it starts.

The simulator server (bench/_harness.py) serves the three devices (serial
belt, pillow, butterfly). ``massaged daemon --simulator --auto-pair`` starts
once to pair them (that first start is reported too), is stopped, and starts
again as it does every day: with its devices already paired. Start-up is
timed from the spawn to "online" (the control socket answers ``status``) and
to "connected" (every device's link is up). Then, from /proc/<pid>/stat and
/proc/<pid>/status: CPU percent of one core and resident memory (VmRSS; the
largest sampled and the kernel's peak VmHWM) while idle for --idle-seconds,
and while running ``collar-zone`` for --session-seconds.

Baseline in the same run: ``python -c 'import asyncio; asyncio.run(asyncio.sleep(N))'``
measured the same way, and the time ``python -c 'import asyncio'`` takes to
run (the interpreter's own start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h

logger = logging.getLogger(__name__)

DEVICES = 3
SETTLE_S = 1.0
"""Pause after start-up before the idle measurement (the first status polls are start-up);
--settle changes it (the test suite's short run)."""


async def start_daemon(ws: h.Workspace, *extra: str) -> tuple[asyncio.subprocess.Process, h.Json]:
    """Start the daemon; it and the seconds to online and to connected."""
    began = time.monotonic()
    proc = await h.spawn_controller(ws, "daemon", "daemon", "--simulator", *extra)
    try:
        online = await h.wait_online(ws.socket)
        connected = await h.wait_devices_up(ws.socket, DEVICES, every=0.005)
    except BaseException:
        await h.stop_process(proc)
        raise
    return proc, {"online_s": round(online - began, 3), "connected_s": round(connected - began, 3)}


async def interpreter_startup(runs: int = 3) -> float:
    """Median seconds of ``python -c 'import asyncio'`` from spawn to exit."""
    times = []
    for _ in range(runs):
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import asyncio")
        await proc.wait()
        times.append(time.monotonic() - began)
    return statistics.median(times)


async def measure(args: argparse.Namespace) -> h.Json:
    """The daemon first, then the bare interpreter."""
    from controller import control

    ws = h.Workspace()
    sim = h.SimServer(ws, h.device_specs(DEVICES), channels={"none"})
    daemon = None
    baseline = None
    try:
        await sim.start()
        ws.write_config(h.daemon_config())
        daemon, first = await start_daemon(ws, "--auto-pair")
        await h.stop_process(daemon)
        daemon, startup = await start_daemon(ws)
        await asyncio.sleep(args.settle)
        idle = await h.meter(daemon.pid, args.idle_seconds)
        answer = await control.call(ws.socket, "run", {"program": args.program, "well_today": True})
        if answer.get("status") != "ok":
            raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
        session = await h.meter(daemon.pid, args.session_seconds)
        await control.call(ws.socket, "emergency_stop")
        await h.stop_process(daemon)
        daemon = None
        sleep_for = args.idle_seconds + args.settle + 30
        baseline = await h.spawn(
            ws,
            "baseline",
            sys.executable,
            "-c",
            f"import asyncio; asyncio.run(asyncio.sleep({sleep_for:g}))",
        )
        await asyncio.sleep(args.settle)
        base_idle = await h.meter(baseline.pid, args.idle_seconds)
        await h.stop_process(baseline)
        baseline = None
        base_start = await interpreter_startup()
    finally:
        await h.stop_process(daemon)
        await h.stop_process(baseline)
        await sim.close()
        ws.close()
    result: h.Json = {
        "daemon": {
            "startup": startup,
            "first_start_with_pairing": first,
            "idle": idle,
            "session": session,
        },
        "baseline": {"startup_s": round(base_start, 3), "idle": base_idle},
        "ratios": {
            "idle_rss": h.ratio(idle["rss_mb"], base_idle["rss_mb"]),
            "startup_online": h.ratio(startup["online_s"], base_start),
        },
    }
    h.say(
        f"start-up: online {startup['online_s']:.3f} s, connected {startup['connected_s']:.3f} s "
        f"(first start with pairing: {first['online_s']:.3f} s / {first['connected_s']:.3f} s)"
    )
    h.say(
        f"idle {idle['seconds']:.0f} s: CPU {idle['cpu_percent']} %, RSS {idle['rss_mb']} MB "
        f"(max {idle['rss_max_mb']}, peak {idle['rss_peak_mb']})"
    )
    h.say(
        f"session {session['seconds']:.0f} s: CPU {session['cpu_percent']} %, "
        f"RSS {session['rss_mb']} MB (peak {session['rss_peak_mb']})"
    )
    h.say(
        f"baseline (bare asyncio sleep): start-up {base_start:.3f} s, CPU "
        f"{base_idle['cpu_percent']} %, RSS {base_idle['rss_mb']} MB"
    )
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="CPU percent and resident memory of the daemon idle (three paired devices) "
        "and in a session, and its start-up time, against a bare asyncio process."
    )
    p.add_argument("--idle-seconds", type=float, default=60.0, help="idle measurement (60)")
    p.add_argument(
        "--session-seconds", type=float, default=30.0, help="measurement in a session (30)"
    )
    p.add_argument("--program", default="collar-zone", help="the session's program")
    p.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        help=f"seconds after start-up before measuring idle ({SETTLE_S:g})",
    )
    args = p.parse_args(argv)
    if args.idle_seconds <= 0 or args.session_seconds <= 0:
        p.error("--idle-seconds and --session-seconds must be positive")
    if args.settle < 0:
        p.error("--settle must not be negative")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """The benchmark."""
    began = time.monotonic()
    result = await measure(args)
    return {
        "benchmark": "footprint",
        "machine": h.machine(),
        "idle_seconds": args.idle_seconds,
        "session_seconds": args.session_seconds,
        "elapsed_s": round(time.monotonic() - began, 1),
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
