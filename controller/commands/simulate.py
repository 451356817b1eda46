"""``massaged simulate`` serves simulated devices; ``sim-fault`` injects faults into them."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Container, Coroutine
from pathlib import Path
from typing import Any

from controller.argtypes import number

# asyncio and the simulator (firmware, radio, bleak) are imported when a command runs.

logger = logging.getLogger(__name__)

MAX_SPEED = 120.0


def register(sub: Any, words: Container[str] | None = None) -> None:
    """Add the simulate and sim-fault commands (words: only these of them, see controller.cli)."""
    if words is None or "simulate" in words:
        _add_simulate(sub)
    if words is None or "sim-fault" in words:
        _add_sim_fault(sub)


def _add_simulate(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve simulated devices on a pseudo-terminal and a simulated BLE radio",
        description=(
            "Serve firmware-level simulations of massage devices until interrupted: "
            "serial belts on pseudo-terminals, Bluetooth devices on a simulated radio "
            "that daemons in other processes reach through a bleak backend. Prints one "
            "JSON line per device (id, kind, link, address, name). "
            "Default: one serial VB1 belt, one SP1 pillow, one EB1 butterfly."
        ),
    )
    p.add_argument(
        "--device",
        action="append",
        metavar="SPEC",
        help=(
            "a device to serve (repeatable): KIND[:serial|ble][,motors=4|6][,heater=yes|no]"
            "[,battery=PERCENT|mains], KIND being belt, pillow or butterfly"
        ),
    )
    p.add_argument("--record", type=Path, metavar="FILE", help="write the recording (JSON Lines)")
    p.add_argument(
        "--speed",
        type=number,
        default=1.0,
        help="run the firmware's physical timers N times faster (default 1)",
    )
    p.add_argument("--radio", type=Path, help="the radio socket (default: the standard path)")
    p.add_argument(
        "--links-drop-with-host",
        action="store_true",
        help=(
            "drop a BLE link when the host process that opened it dies (default: the link "
            "outlives it, as BlueZ's does)"
        ),
    )
    p.set_defaults(func=run_simulate)


def _add_sim_fault(sub: Any) -> None:
    f = sub.add_parser(
        "sim-fault",
        help="inject a fault into a device of a running 'massaged simulate'",
        description=(
            "Link faults: link_down, link_up, corrupt [RATE], drop [RATE], delay [SECONDS], "
            "split, clear. Physical: press_stop_button, overheat, set_occupied true|false, "
            "turn_wheel '[A, B]'."
        ),
    )
    f.add_argument("device", help="device id (belt-1), BLE address, advertised name or port")
    f.add_argument("fault", help="fault name")
    f.add_argument("value", nargs="?", help="value, as JSON where it is a number, bool or list")
    f.add_argument("--radio", type=Path, help="the radio socket (default: the standard path)")
    f.set_defaults(func=run_sim_fault)


def run_simulate(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """Serve the fleet until SIGINT or SIGTERM.

    The options are checked here (2 when one is wrong); the simulator is the coroutine
    returned, which controller.cli runs: a refused start does without asyncio.
    """
    if not 1.0 <= args.speed <= MAX_SPEED:
        print(f"massaged: error: --speed must be 1..{MAX_SPEED:g}", file=sys.stderr)
        return 2
    # The paths are checked before the simulator is loaded: a typo costs no start-up.
    if args.record is not None and (problem := _record_problem(args.record)):
        print(f"massaged: error: --record {args.record}: {problem}", file=sys.stderr)
        return 2
    if args.radio is not None and not args.radio.parent.parent.is_dir():
        # The radio makes its own private folder, but no chain of folders above it.
        print(
            f"massaged: error: --radio {args.radio}: folder {args.radio.parent.parent} "
            "does not exist",
            file=sys.stderr,
        )
        return 2
    return _serve(args)


async def _serve(args: argparse.Namespace) -> int:
    """The simulator, its options checked (run_simulate)."""
    import asyncio

    from simulator.errors import RadioError
    from simulator.fleet import DEFAULT_SPECS, Fleet, parse_spec
    from simulator.recording import Recorder

    specs = [parse_spec(s) for s in (args.device or DEFAULT_SPECS)]
    loop = asyncio.get_running_loop()
    fleet = Fleet(
        specs,
        radio_path=args.radio,
        speed=args.speed,
        links_outlive_host=not args.links_drop_with_host,
    )
    # The radio first: a simulator that refuses (another one serves this radio) must
    # leave everything as it found it, the other's serial links and the recording too.
    try:
        await fleet.claim()
    except RadioError as err:
        print(f"massaged: error: {err.reason}", file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"massaged: error: cannot serve the radio at {fleet.radio_path}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    recorder = None
    stop = asyncio.Event()
    try:
        if args.record:
            recorder = Recorder(args.record, t0=loop.time(), speed=args.speed)
            recorder.keep_in_memory = False  # a long simulation must not grow without bound
            fleet.recorder = recorder
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        async with fleet:
            for device in fleet.devices:
                print(json.dumps(device.describe()), flush=True)
            origin = "" if recorder is None else f"; recording t=0 at monotonic {recorder.t0:.6f}"
            print(
                f"# radio {fleet.radio_path}{origin}; Ctrl-C to stop", file=sys.stderr, flush=True
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await fleet.close()
        if recorder is not None:
            recorder.close()
    return 0


def _record_problem(path: Path) -> str | None:
    """Why the recording cannot be written there, before anything starts (None: it can)."""
    if path.is_dir():
        return "is a folder; give a file name"
    parent = path.parent
    if not parent.is_dir():
        return f"folder {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {parent} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return "is not writable"
    return None


def _parse_value(text: str | None) -> object:
    if text is None:
        return None
    with contextlib.suppress(json.JSONDecodeError):
        return json.loads(text)
    return text


async def run_sim_fault(args: argparse.Namespace) -> int:
    """Send one fault to the running simulator."""
    from devices.links.sim_radio import default_radio_path
    from simulator.ble.wire import radio_request
    from simulator.errors import RadioClosedError, RadioError

    path = args.radio or default_radio_path()
    try:
        await radio_request(
            path, "fault", device=args.device, name=args.fault, value=_parse_value(args.value)
        )
    except RadioClosedError:
        print(
            f"massaged: error: no simulator at {path}: is 'massaged simulate' running?",
            file=sys.stderr,
        )
        return 1
    except RadioError as err:
        print(f"massaged: error: {err.reason}", file=sys.stderr)
        return 1
    except OSError as err:
        why = err.strerror or str(err)
        print(
            f"massaged: error: no simulator at {path} ({why}): is 'massaged simulate' running?",
            file=sys.stderr,
        )
        return 1
    print(f"{args.fault} -> {args.device}")
    return 0
