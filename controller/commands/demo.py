"""``massaged demo``: the main job on simulated devices, no hardware and no setup.

It runs what a user would: ``massaged simulate`` in its own process, a short
demonstration of each device, then ``massaged daemon --simulator --auto-pair``
in another process, and the ``collar-zone`` program on all three devices with
the live display. The recording and plots are left in the output folder.
Everything else (registry, sockets) lives in a private temporary folder, so
the demo never touches the user's own paired devices or history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.argtypes import number
from devices.errors import ConfigError, MassagedError

# asyncio and the layers the demo drives are imported when it runs: registering the
# command (every --help does) must not cost their start-up.
if TYPE_CHECKING:
    import asyncio

    from programs.plot import TimeAxis

DEFAULT_SPEED = 10.0
"""collar-zone lasts 5¼ minutes: at ×10 the demo's session takes about half a minute."""
START_TIMEOUT_S = 30.0


def register(sub: Any) -> None:
    """Add the demo command."""
    p = sub.add_parser(
        "demo",
        help="the simulated belt, pillow and butterfly at work: a short demo, then collar-zone",
        description=(
            "Start a simulator and a daemon, pair the simulated belt, pillow and butterfly, "
            "run a program on them sped up, and leave the recording and its plots in --out."
        ),
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="where to leave the recording"
    )
    p.add_argument(
        "--speed",
        type=number,
        default=DEFAULT_SPEED,
        help=f"run the session N times faster (default {DEFAULT_SPEED:g})",
    )
    p.add_argument("--program", default="collar-zone", help="the program (default collar-zone)")
    p.add_argument("--no-display", action="store_true", help="one line per step, no live view")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Run the demo; exit 0 when the session completed or a person stopped it.

    Everything the user typed is checked here, before ~15 s of setup (and before
    asyncio loads); the demo is the coroutine returned, which controller.cli runs.
    """
    _check_args(args)
    return _demo(args)


async def _demo(args: argparse.Namespace) -> int:
    """The demo, its options checked (cmd_demo)."""
    import asyncio
    import shutil
    import tempfile

    out: Path = args.out
    try:
        await asyncio.to_thread(out.mkdir, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the folder: {err.strerror or err}") from err
    recording = out / "recording.jsonl"
    folder = Path(tempfile.mkdtemp(prefix="massaged-demo-"))
    env = {
        **os.environ,
        "MASSAGED_SIM_RADIO": str(folder / "radio.sock"),
        "MASSAGED_DATA_DIR": str(folder / "data"),
        "MASSAGED_CONFIG_DIR": str(folder / "config"),
        "MASSAGED_DAEMON_SOCKET": str(folder / "control.sock"),
        # The web page on its usual port, or any free one when that is taken (docs/web.md).
        "MASSAGED_WEB_PORT": os.environ.get("MASSAGED_WEB_PORT") or _web_port(),
    }
    procs: list[asyncio.subprocess.Process] = []
    result: dict[str, Any] | None = None
    axis: TimeAxis | None = None
    from controller.remote import RemoteSession
    from controller.stop_signals import on_stop_signals

    # The children run in their own sessions, so Ctrl-C or a closed terminal reaches only
    # this process, which stops the session softly and then its children, in order.
    main = asyncio.current_task()
    stopped_by: list[int] = []
    remote: RemoteSession | None = None
    ended = False

    def on_signal(sig: Any, count: int) -> None:
        if ended:
            return  # stopping the children already: a further signal must not strand them
        if remote is not None:
            remote.on_signal(sig)  # the session: a soft stop, as in run
        elif count == 1 and main is not None:
            stopped_by.append(128 + int(sig))  # the set-up: end it, children stopped
            main.cancel()

    signals = contextlib.ExitStack()
    signals.enter_context(on_stop_signals(on_signal))
    try:
        say("1. starting the simulator: a serial VB1 belt, an SP1 pillow and an EB1 butterfly")
        sim = await _start(
            procs, env, "simulate", "--record", str(recording), "--speed", f"{args.speed:g}"
        )
        devices = [json.loads(await _line(sim.stdout, sim)) for _ in range(3)]
        for d in devices:
            say(f"   {d['id']:<12} {d['kind']:<10} {d['link']:<7} {d['address']}")
        banner = await _line(sim.stderr, sim)  # the radio is listening; the recording's t=0

        say("\n2. what each device does: every output briefly and gently, one at a time")
        await _demonstrate(devices, Path(env["MASSAGED_SIM_RADIO"]))

        say("\n3. starting the daemon; it pairs the simulated devices by itself")
        await _start(
            procs, env, "daemon", "--simulator", "--auto-pair", "--speed", f"{args.speed:g}"
        )
        socket = Path(env["MASSAGED_DAEMON_SOCKET"])
        await _wait_devices(socket, 3)
        say(f"   belt, pillow and butterfly connected; control socket {socket}")
        say(f"   watch and stop it in a browser: {await _web_address(socket)}")

        say(f"\n4. the {args.program} program on all three, ×{args.speed:g} speed")
        from controller.remote import run_remote
        from controller.session_origin import recording_t0, watch_origin

        live = not args.no_display and sys.stdout.isatty()
        if live:
            await asyncio.sleep(1.5)  # let the reader see the steps above
        # A demonstration on simulated devices: nobody is massaged, nobody to ask.
        remote = RemoteSession(socket, live=live, handle_signals=False)
        async with watch_origin(socket, args.speed) as origin:
            result = await run_remote(
                socket, args.program, live=live, confirmed=["well_today"], remote=remote
            )
        # Put the recording on the program's time axis, so that it lines up with the plan.
        axis = origin.axis(recording_t0(banner), args.speed)
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        say("\nstopped during the set-up: no session ran")
    finally:
        ended = True
        with signals:
            for proc in reversed(procs):
                await _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    if stopped_by:
        return stopped_by[0]
    if result is not None:
        say(f"\nsession {result['outcome']}: {result['reason']} after {result['elapsed']:.0f} s")
    from controller.courses import after_session_advice

    say(after_session_advice())
    signalled = None if remote is None else remote.received.exit_code()
    if result is not None and result["outcome"] == "stopped" and signalled is not None:
        # Stopped softly by Ctrl-C, SIGTERM or SIGHUP: exit now (130, 143, 129), not after
        # a second or two of drawing; the recording is kept, and says how to draw it.
        _recording_only(recording, axis, args.program)
        return signalled
    await asyncio.to_thread(_plots, args.program, recording, out, axis, args.speed)
    # A stop from the web page, MQTT or `massaged stop` is the demo doing its job (it
    # shows that Stop works from anywhere); a fault or an emergency stop is not.
    return 0 if result is not None and result["outcome"] in ("completed", "stopped") else 1


def _web_port() -> str:
    """The page's default port when it is free here, else "0" (any free port)."""
    import socket as sockets

    from controller.web.settings import DEFAULT_PORT

    with sockets.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            return "0"
    return str(DEFAULT_PORT)


async def _web_address(socket: Path) -> str:
    """The web page's address, from the daemon's status."""
    from controller import control

    with contextlib.suppress(MassagedError, OSError):
        answer = await control.call(socket, "status", timeout=2.0)
        url = ((answer.get("data") or {}).get("daemon") or {}).get("web")
        if url:
            return str(url)
    return "(the web page is not served: see docs/web.md)"


def _check_args(args: argparse.Namespace) -> None:
    """Raise ConfigError for a speed, program or output folder the demo cannot use."""
    from controller.commands.daemon import MAX_DAEMON_SPEED
    from controller.commands.simulate import MAX_SPEED

    # The simulator and the daemon both run at this speed: the narrower range holds.
    top = min(MAX_DAEMON_SPEED, MAX_SPEED)
    if not 1.0 <= args.speed <= top:
        raise ConfigError(f"--speed must be 1..{top:g}, not {args.speed:g}")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder for the recording and plots")
    if not out.exists() and not out.parent.is_dir():
        # The demo makes the --out folder itself, never the folders above it (issue 13).
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    # The program last: the library loads the program models.
    from programs import library

    library.get(args.program)  # a ProgramError (a ConfigError) names the built-ins


def say(text: str) -> None:
    """One line for the user."""
    print(text, flush=True)


def _die_with_parent() -> Callable[[], None] | None:
    """For a child: ask Linux for a SIGTERM when its parent dies (elsewhere: nothing).

    The C function is looked up here, in the parent: the child, between fork and exec,
    only calls it (nothing that could wait on a lock another thread held).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


async def _start(
    procs: list[asyncio.subprocess.Process], env: dict[str, str], *args: str
) -> asyncio.subprocess.Process:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Its own session: the terminal's Ctrl-C and hang-up go to the demo alone.
        start_new_session=True,
        # ... and a SIGTERM when the demo dies, however (kill -9): no orphaned session.
        preexec_fn=_die_with_parent(),
    )
    procs.append(proc)
    return proc


async def _line(stream: asyncio.StreamReader | None, proc: asyncio.subprocess.Process) -> str:
    import asyncio

    assert stream is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            line = await stream.readline()
    except TimeoutError:
        raise MassagedError(f"the simulator said nothing in {START_TIMEOUT_S:g} s") from None
    if not line:
        raise MassagedError(f"the simulator ended early: {await _last_words(proc)}")
    return line.decode()


async def _last_words(proc: asyncio.subprocess.Process) -> str:
    """The last line a child wrote on stderr (its error), or its exit status."""
    import asyncio

    text = b""
    if proc.stderr is not None:
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(5):
                text = await proc.stderr.read()
    lines = [line for line in text.decode(errors="replace").splitlines() if line.strip()]
    if lines:
        return lines[-1].removeprefix("massaged: error: ")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await proc.wait()
    return f"exit status {proc.returncode}"


async def _stop(proc: asyncio.subprocess.Process) -> None:
    import asyncio

    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _demonstrate(devices: list[dict[str, Any]], radio: Path) -> None:
    from controller.commands.selftest import check_device
    from controller.guard import guarded
    from devices.capabilities import DeviceKind
    from devices.kinds import make_device
    from simulator.ble.backend import SimBleakClient

    # This process drives the devices here (the daemon later has its own guard).
    async with guarded():
        for d in devices:
            device = make_device(
                DeviceKind(d["kind"]),
                d["address"],
                transport="serial" if d["link"] == "serial" else "ble",
                ble_backend=SimBleakClient,
                ble_kwargs={"radio": str(radio)},
            )
            try:
                await check_device(device, say=lambda text: say("   " + text))
            finally:
                await device.close()


async def _wait_devices(socket: Path, count: int) -> None:
    import asyncio

    from controller import control

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(MassagedError, OSError):
            answer = await control.call(socket, "devices", timeout=2.0)
            devices = answer.get("data") or []
            if len(devices) >= count and all(d["link"] == "up" for d in devices):
                return
        await asyncio.sleep(0.2)
    raise MassagedError(f"the daemon did not connect {count} devices in {START_TIMEOUT_S:g} s")


def _recording_only(recording: Path, axis: TimeAxis | None, program_id: str) -> None:
    """Where the recording of a session stopped by a signal is, and how to plot it."""
    start = "" if axis is None else f" --session-start {axis.origin:.2f}"
    say(f"\nrecording: {recording} (format in docs/simulator.md); to plot it:")
    say(
        f"   massaged programs plot-recording {recording} --out recording.png"
        f" --program {program_id}{start}"
    )


def _plots(
    program_id: str, recording: Path, out: Path, axis: TimeAxis | None, speed: float
) -> None:
    from programs import library
    from programs.errors import PlotError
    from programs.plot import plot_plan, plot_recording
    from programs.render import render
    from simulator.recording import read_recording

    rows = read_recording(recording)
    plan = render(library.get(program_id).program)
    title = f"{plan.program_id}: {plan.title} — recorded on the simulated devices at ×{speed:g}"
    try:
        # The same time axis, channel names, steps and margins as the plan's plot; without
        # the session's start the recording keeps its own time and no steps are claimed.
        shown = plan if axis is not None else None
        plot_recording(rows, out / "recording.png", plan=shown, axis=axis, title=title)
        plot_plan(plan, out / f"{program_id}-plan.png")
    except PlotError as err:
        say(f"no plots: {err}")
        return
    changes = len(rows)
    say(f"\nrecording: {recording} ({changes} output changes, format in docs/simulator.md)")
    if axis is not None:
        say(f"   the session started at t = {axis.origin:.2f} s of the recording")
    else:
        say("   (the session's start is unknown: the plot counts from the simulator's start)")
    say(f"plot of the recording: {out / 'recording.png'}")
    say(f"plot of the program: {out / f'{program_id}-plan.png'}")
