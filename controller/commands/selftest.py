"""``massaged selftest KIND=ADDRESS``: check that a device works, gently, one output at a time."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from controller.argtypes import seconds
from devices.errors import ConfigError, IdentificationError

# The device layers (drivers, capabilities, outputs; asyncio) are imported when a
# self-test runs: registering the command, and a bad option, do without them.
if TYPE_CHECKING:
    from devices.capabilities import DeviceKind
    from devices.drivers.base import Device
    from devices.outputs import Output

logger = logging.getLogger(__name__)

GENTLE_LEVEL = 60
"""Belt level for the test pulses: about a quarter of the motor's range."""
GENTLE_STRENGTH = 8
"""EMS strength for the test pulse: barely perceptible (of 0..200)."""
PULSE_SECONDS = 0.6
LEASE_SECONDS = 0.5

Say = Callable[[str], object]
"""Where findings are reported (print on the command line)."""


def register(sub: Any) -> None:
    """Add the selftest command."""
    p = sub.add_parser(
        "selftest",
        help="connect to devices, run each output briefly and gently, and report",
        description=(
            "Connect to each device, identify it, run every output briefly and gently "
            "one at a time, stop it, and print what was found. "
            "KIND is belt, pillow or butterfly, optionally with its model "
            "(butterfly:CoyoteV2; the kind's own by default); ADDRESS is a serial path or "
            "URL, or a Bluetooth address."
        ),
    )
    p.add_argument("targets", nargs="+", metavar="KIND[:MODEL]=ADDRESS")
    p.add_argument(
        "--simulator",
        action="store_true",
        help="reach Bluetooth devices of a running 'massaged simulate'",
    )
    p.add_argument("--radio", help="the simulator's radio socket (default: its standard path)")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds to connect (default 10)")
    p.set_defaults(func=cmd_selftest)


def parse_target(text: str) -> tuple[DeviceKind, str, str]:
    """Split KIND[:MODEL]=ADDRESS into kind, model (as the models table names it) and address."""
    target, sep, address = text.partition("=")
    if not sep or not address:
        raise ConfigError(f"{text!r}: expected KIND=ADDRESS, for example belt=/dev/ttyACM0")
    from devices.capabilities import DeviceKind
    from devices.kinds import model_spec

    kind_text, _, model_text = target.partition(":")
    try:
        kind = DeviceKind(kind_text.strip().lower())
    except ValueError:
        valid = ", ".join(k.value for k in DeviceKind)
        raise ConfigError(f"{text!r}: unknown kind {kind_text!r}; valid kinds: {valid}") from None
    try:
        model = model_spec(model_text.strip(), kind).model
    except ConfigError as err:
        raise ConfigError(f"{text!r}: {err}") from None
    return kind, model, address.strip()


def cmd_selftest(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """run_selftest for the command line: a bad target is named before asyncio loads."""
    for text in args.targets:
        parse_target(text)
    return run_selftest(args)


async def run_selftest(args: argparse.Namespace) -> int:
    """Test each target in turn; exit code 1 when any failed."""
    targets = [parse_target(t) for t in args.targets]
    from devices.kinds import make_device

    ble_backend: Any = None
    ble_kwargs: dict[str, Any] = {}
    if args.simulator:
        from simulator.ble.backend import SimBleakClient

        ble_backend = SimBleakClient
        if args.radio:
            ble_kwargs["radio"] = args.radio
    failed = 0
    for kind, model, address in targets:
        try:
            device = make_device(
                kind, address, model=model, ble_backend=ble_backend, ble_kwargs=ble_kwargs
            )
        except ConfigError as err:  # a kind that has no link of that form: the next one
            failed += 1
            print(f"{kind.value} at {address}: FAILED: {err}")
            continue
        try:
            await check_device(device, timeout=args.timeout, say=print)
        except Exception as err:  # report every device, then fail overall
            failed += 1
            hint = model_hint(err, kind, address)
            print(f"{kind.value} at {address}: FAILED: {err}{hint}")
        finally:
            await device.close()
    if failed:
        print(f"massaged: error: {failed} of {len(targets)} self-tests failed", file=sys.stderr)
        return 1
    return 0


def model_hint(err: Exception, kind: DeviceKind, address: str) -> str:
    """How to name the model a device showed itself to be, when it is one of this kind."""
    from devices.kinds import model_spec

    found = err.found_model if isinstance(err, IdentificationError) else None
    if not found or model_spec(found).kind != kind:
        return ""
    return f" (give its model: {kind.value}:{found.replace(' ', '')}={address})"


async def check_device(
    device: Device, *, timeout: float = 10.0, say: Say = print
) -> dict[str, Any]:
    """Connect, identify, pulse every output gently one at a time, stop; return the findings."""
    from devices.kinds import kind_spec

    caps = await device.connect(timeout=timeout)
    say(f"{caps.kind.value} at {device.link.address}: {caps.model}")
    details = [
        f"firmware {caps.firmware}" if caps.firmware else "",
        caps.serial and f"serial {caps.serial}",
    ]
    if any(details):
        say("  " + ", ".join(d for d in details if d))
    findings: dict[str, Any] = {"kind": caps.kind.value, "model": caps.model, "tested": []}
    try:
        await _tests()[kind_spec(caps.kind).output](device, findings, say)
    finally:
        with contextlib.suppress(Exception):
            await device.stop()
    status = await device.status()
    battery = "mains" if status.battery is None else f"{status.battery} %"
    temperature = "" if status.temperature is None else f", temperature {status.temperature} °C"
    say(f"  battery {battery}{temperature}")
    left_on = {k: v for k, v in status.outputs.items() if isinstance(v, int) and v}
    say("  stopped: every output at zero" if not left_on else f"  STILL ON: {left_on}")
    findings["battery"] = status.battery
    findings["stopped"] = not left_on
    return findings


async def _hold(device: Device, seconds: float) -> None:
    """Keep the lease fed for a pulse, as a session runner would."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        device.renew_lease(LEASE_SECONDS)
        await asyncio.sleep(min(0.1, left))


async def _pulse(
    device: Device,
    label: str,
    findings: dict[str, Any],
    say: Say,
    on: Callable[[], Awaitable[None]],
) -> None:
    say(f"  {label} ...")
    device.renew_lease(LEASE_SECONDS)
    await on()
    await _hold(device, PULSE_SECONDS)
    findings["tested"].append(label)


async def _test_belt(device: Device, findings: dict[str, Any], say: Say) -> None:
    from devices.outputs import BeltOutput

    caps = device.capabilities
    count = len(caps.motors)
    for motor in caps.motors:
        levels = tuple(GENTLE_LEVEL if m.index == motor.index else 0 for m in caps.motors)
        label = f"motor {motor.index} ({motor.place.value}, {motor.side.value})"
        await _pulse(
            device, label, findings, say, functools.partial(device.apply, BeltOutput(levels))
        )
    if caps.heater:
        await _pulse(
            device,
            "heater",
            findings,
            say,
            functools.partial(device.apply, BeltOutput((0,) * count, True)),
        )
    await device.apply(BeltOutput.off(count))


async def _test_pillow(device: Device, findings: dict[str, Any], say: Say) -> None:
    from devices.capabilities import KneadDirection
    from devices.outputs import PillowOutput

    caps = device.capabilities
    for direction in (KneadDirection.CLOCKWISE, KneadDirection.COUNTER_CLOCKWISE):
        out = PillowOutput(speed=1, direction=direction)
        await _pulse(
            device,
            f"kneading slow, {direction.value}",
            findings,
            say,
            functools.partial(device.apply, out),
        )
    if caps.heater:
        await _pulse(
            device,
            "heater",
            findings,
            say,
            functools.partial(device.apply, PillowOutput(speed=0, heat=True)),
        )
    await device.apply(PillowOutput.off())


async def _test_butterfly(device: Device, findings: dict[str, Any], say: Say) -> None:
    from devices.outputs import ButterflyOutput, EmsChannelOutput

    pulse = EmsChannelOutput(strength=GENTLE_STRENGTH, frequency=50, intensity=30)
    for name, out in (
        ("A (left)", ButterflyOutput(a=pulse)),
        ("B (right)", ButterflyOutput(b=pulse)),
    ):
        await _pulse(
            device, f"EMS channel {name}", findings, say, functools.partial(device.apply, out)
        )
    await device.apply(ButterflyOutput.off())


def _tests() -> dict[type[Output], Callable[[Device, dict[str, Any], Say], Awaitable[None]]]:
    """How each kind's outputs are pulsed, one at a time, by the output class it takes."""
    from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput

    return {BeltOutput: _test_belt, PillowOutput: _test_pillow, ButterflyOutput: _test_butterfly}
