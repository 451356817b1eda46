"""``massaged daemon`` and the commands that talk to it: scan, pair, devices, stop, status, ..."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Container, Coroutine
from pathlib import Path

from controller import argtypes, output, quick_control, store_paths
from controller.default_settings import Settings, settings_of, surely_defaults
from controller.errors import DaemonNotRunningError, NoTerminalError
from controller.paths import check_socket_path, no_socket_at
from devices.errors import ConfigError, MassagedError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# asyncio, the control socket's server and client (controller.control, with the API's
# models) and the daemon are imported by the handlers that use them: stop, status and
# the like send through quick_control, and a bad option needs none of them. A handler
# that needs asyncio checks its options first and returns the coroutine that
# controller.cli runs: a command refused on its options does without asyncio.

logger = logging.getLogger(__name__)

MAX_DAEMON_SPEED = 60.0


def register(sub: Any, words: Container[str] | None = None) -> None:
    """Add the daemon command and the commands that reach a running daemon.

    words: only these of them (controller.cli adds only the command a command line
    names: building the parsers of all eleven is most of a listing's start-up).
    """
    adders = {
        "daemon": _add_daemon,
        "scan": _add_scan,
        "pair": _add_pair,
        "devices": _add_devices,
        "unpair": _add_unpair,
    }
    for word in (*adders, *quick_control.SIMPLE_COMMANDS):
        if words is not None and word not in words:
            continue
        if word in adders:
            adders[word](sub)
        else:
            _add_simple(sub, word)


def _add_daemon(sub: Any) -> None:
    d = sub.add_parser(
        "daemon",
        help="run the daemon: keep paired devices connected, run sessions on request",
        description=(
            "Connect to every paired device (reconnecting with backoff), serve the control "
            "socket for the command line and MQTT for home automation, and run sessions on "
            "request. SIGTERM stops every device first, then exits."
        ),
    )
    _common(d)
    d.add_argument(
        "--simulator",
        action="store_true",
        help="drive the devices of a running 'massaged simulate' (Bluetooth through its radio)",
    )
    d.add_argument("--radio", type=Path, help="the simulator's radio socket")
    d.add_argument(
        "--auto-pair",
        action="store_true",
        help="with --simulator: pair every simulated device not paired yet, without asking",
    )
    d.add_argument(
        "--speed",
        type=argtypes.number,
        default=1.0,
        help="with --simulator: run sessions N times faster (the simulator needs the same --speed)",
    )
    d.set_defaults(func=cmd_daemon)


def _add_scan(sub: Any) -> None:
    s = sub.add_parser(
        "scan",
        help="list nearby devices that speak a massaged protocol",
        description=(
            "Look for belts, pillows and butterflies nearby (through the daemon when it "
            "runs) and list their kind, address, name, link and signal strength."
        ),
    )
    _common(s)
    s.add_argument(
        "--timeout", type=argtypes.seconds, default=None, help="seconds to look (default 5)"
    )
    s.add_argument("--simulator", action="store_true", help="scan a running 'massaged simulate'")
    s.add_argument("--radio", type=Path, help="the simulator's radio socket")
    output.add_json_option(s)
    s.set_defaults(func=cmd_scan)


def _add_pair(sub: Any) -> None:
    p = sub.add_parser(
        "pair",
        help="identify a device, let you feel a gentle pulse, and remember it",
        description=(
            "Pair a device: identify it, send a short gentle pulse, ask whether you felt "
            "it, and remember it in the registry. Without ADDRESS the nearby devices are "
            "scanned; with several unpaired ones, give the ADDRESS of the one to pair. "
            "Without a terminal (scripts), --yes answers the pulse question."
        ),
    )
    _common(p)
    p.add_argument("address", nargs="?", help="BLE address or serial port (default: scan)")
    p.add_argument("--name", help="a name for it (default: its kind, then kind-2, ...)")
    p.add_argument("--kind", choices=("belt", "pillow", "butterfly"), help="when not scanned")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm the pulse")
    p.add_argument("--simulator", action="store_true", help="pair a simulated device")
    p.add_argument("--radio", type=Path, help="the simulator's radio socket")
    p.set_defaults(func=cmd_pair)


def _add_devices(sub: Any) -> None:
    dv = sub.add_parser(
        "devices",
        help="list paired devices; rename, unpair, set caps",
        description=(
            "The paired devices (through the daemon when it runs, else from the registry); "
            "without an ACTION, the list."
        ),
    )
    _common(dv)
    dsub = dv.add_subparsers(dest="devices_command", metavar="ACTION")
    output.add_json_option(dv)
    dv.set_defaults(func=cmd_devices, devices_command="list")
    ls = dsub.add_parser(
        "list",
        help="paired devices and their state",
        description="Each paired device: name, kind, model, address, link state and cap.",
    )
    _common(ls)
    output.add_json_option(ls)
    rn = dsub.add_parser(
        "rename",
        help="rename a paired device",
        description="Give a paired device a new name (letters, digits, - and _).",
    )
    _common(rn)
    rn.add_argument("name")
    rn.add_argument("new_name")
    up = dsub.add_parser(
        "unpair",
        help="forget a paired device",
        description="Forget a paired device: the daemon no longer connects to it.",
    )
    _common(up)
    up.add_argument("name")
    st = dsub.add_parser(
        "set",
        help="per-device cap",
        description=(
            "Cap one device below its profile's limits, e.g. a pillow that feels strong: "
            "--max-intensity 0.6."
        ),
    )
    _common(st)
    st.add_argument("name")
    st.add_argument(
        "--max-intensity",
        type=argtypes.number,
        required=True,
        help="at most this fraction (0..1) of the device's maximum, below the profile's cap",
    )


def _add_unpair(sub: Any) -> None:
    u = sub.add_parser(
        "unpair",
        help="forget a paired device (same as 'devices unpair')",
        description="Forget a paired device: the daemon no longer connects to it.",
    )
    _common(u)
    u.add_argument("name")
    u.set_defaults(func=cmd_devices, devices_command="unpair")


def _add_simple(sub: Any, name: str) -> None:
    # The simple commands also have a quick path (controller.quick_control) that
    # controller.cli.main tries first: the table lives there so both agree.
    command, text = quick_control.SIMPLE_COMMANDS[name]
    c = sub.add_parser(
        name,
        help=text,
        description=f"{text[0].upper()}{text[1:]}, through the running daemon.",
    )
    _common(c)
    c.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    c.set_defaults(func=cmd_simple, api_command=command)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="configuration file")
    p.add_argument("--socket", type=Path, help="the daemon's control socket")
    p.add_argument("--db", type=Path, help="the store (registry and history)")


def check_paths(args: argparse.Namespace) -> None:
    """ConfigError for a path of the command line that cannot do, found without the
    settings' models: a --config that cannot be read, a --socket too long for a Unix
    socket, a --db in a folder that does not exist."""
    quick_control.check_config_file(getattr(args, "config", None))
    if getattr(args, "socket", None):
        check_socket_path(args.socket)
    db: Path | None = getattr(args, "db", None)
    if db and getattr(args, "api_command", None) is None and not db.expanduser().parent.is_dir():
        # A path the user typed: a typo must not leave new folders behind (issue 13).
        # (stop, gentler, ... only talk to the daemon: their --db is not opened.)
        raise ConfigError(f"--db {db}: the folder {db.expanduser().parent} does not exist")


def load(args: argparse.Namespace) -> Any:
    """The effective configuration with command-line overrides (its paths checked first)."""
    check_paths(args)
    from controller.config import load_config

    config = load_config(getattr(args, "config", None))
    if getattr(args, "socket", None):
        config.daemon.socket = args.socket
    check_socket_path(Path(config.daemon.socket))  # before any slow start-up
    if getattr(args, "db", None):
        config.store.path = args.db
    if getattr(args, "simulator", False):
        config.daemon.simulator = True
    if getattr(args, "radio", None):
        config.daemon.simulator_radio = args.radio
    return config


def load_settings(args: argparse.Namespace) -> Settings:
    """load's control socket and database, found without the settings' models when no
    file and no variable sets anything (controller.default_settings)."""
    check_paths(args)
    found = surely_defaults(getattr(args, "config", None))
    given = [p for p in (getattr(args, "socket", None), getattr(args, "db", None)) if p]
    if found is None or any(str(p).startswith("~") for p in given):
        # The settings' validation expands a ~ (and names a user this system does not know).
        return settings_of(load(args))
    if getattr(args, "socket", None):
        found.socket = Path(args.socket)
    check_socket_path(found.socket)  # before any slow start-up
    if getattr(args, "db", None):
        found.db = Path(args.db)
    return found


def _simulator_link(config: Any) -> tuple[Any, dict[str, Any], Path | None]:
    """The bleak backend and radio path when driving simulated devices."""
    if not config.daemon.simulator:
        return None, {}, None
    from devices.links.sim_radio import default_radio_path
    from simulator.ble.backend import SimBleakClient

    radio = Path(config.daemon.simulator_radio or default_radio_path())
    return SimBleakClient, {"radio": str(radio)}, radio


# -- the daemon ------------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Run the daemon until SIGTERM or Ctrl-C.

    The options are checked here; the daemon is the coroutine returned, which
    controller.cli runs: a start refused on its options does without asyncio.
    """
    config = load(args)
    if args.speed != 1.0 and not config.daemon.simulator:
        raise ConfigError("--speed works only with --simulator: real devices run in real time")
    if not 1.0 <= args.speed <= MAX_DAEMON_SPEED:
        raise ConfigError(f"--speed must be 1..{MAX_DAEMON_SPEED:g}")
    if not getattr(args, "verbose", 0):
        # [daemon] log_level ($MASSAGED_DAEMON_LOG_LEVEL); -v / -vv on the command line win.
        logging.getLogger().setLevel(config.daemon.log_level.upper())
    if config.daemon.wire_debug:
        for name in ("devices.links", "devices.drivers"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    # No lock file beside a wrong one, and a wrong --db refused before the daemon's layers load.
    store_paths.check_database_file(store_paths.database_path(config.store.path))
    _load_daemon_layers()
    return _serve(args, config)


def _load_daemon_layers() -> None:
    """Import what _serve needs, now that the options are known to be good.

    Here rather than in _serve: controller.cli keeps the garbage collector off until it
    runs the coroutine this command returns, and then freezes what exists. Imported now,
    the daemon's modules (about a quarter of its start-up) are made without the collector's
    passes over them, and are frozen with the rest of the start-up.
    """
    import asyncio  # noqa: F401

    from controller import control, daemon, guard, locks, sdnotify, store  # noqa: F401


async def _serve(args: argparse.Namespace, config: Any) -> int:
    """The daemon, its options checked (cmd_daemon)."""
    # The daemon's layers once the options are known to be good.
    import asyncio

    from controller import control, sdnotify
    from controller.daemon import Daemon, serve_until_signalled
    from controller.guard import HostGuard
    from controller.locks import DaemonLock
    from controller.store import Store

    backend, ble_kwargs, radio = _simulator_link(config)
    # Before the store, the socket or any device: a second daemon on this database is
    # refused here, before it can close a session or open a port the first one uses.
    lock = DaemonLock(store_paths.database_path(config.store.path))
    lock.acquire()
    try:
        store = Store.open(config.store.path)
    except BaseException:
        lock.release()
        raise
    daemon = Daemon(
        store,
        ble_backend=backend,
        ble_kwargs=ble_kwargs,
        radio_path=radio,
        reconnect_min=config.daemon.reconnect_min,
        reconnect_max=config.daemon.reconnect_max,
        scan_timeout=config.daemon.scan_timeout,
        default_profile=config.session.profile,
        speed=args.speed,
        web=config.web,
    )
    server = control.ControlServer(
        daemon, Path(config.daemon.socket), group=config.daemon.socket_group
    )
    bridge: Any = None
    watchdog: asyncio.Task[None] | None = None
    # Outside this process: ends every BLE link if the daemon freezes or dies (see the module).
    host_guard = HostGuard()
    try:
        await host_guard.start()
        await server.start()
        await daemon.start()
        if args.auto_pair:
            if radio is None:
                raise ConfigError("--auto-pair works only with --simulator")
            await auto_pair(daemon)
        if config.mqtt.enabled:
            from controller.mqtt.runtime import start_bridge

            bridge = await start_bridge(daemon, config)
        interval = sdnotify.watchdog_interval() if config.daemon.watchdog else None
        if interval:
            watchdog = asyncio.get_running_loop().create_task(_watchdog(interval))
        print(
            f"massaged daemon: {len(daemon.supervisor.devices)} paired device(s), "
            f"control socket {config.daemon.socket}"
            + (f", web page {daemon.web_url}" if daemon.web_url else ""),
            file=sys.stderr,
            flush=True,
        )
        await serve_until_signalled(daemon, ready=lambda: sdnotify.notify("READY=1"))
    finally:
        sdnotify.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        # Devices first: whatever else fails below, nothing is left running on a body.
        await daemon.close()
        await host_guard.close()
        if bridge is not None:
            await bridge.close()
        await server.close()
        store.close()
        lock.release()
    return 0


AUTO_PAIR_SETTLE_S = 1.0
"""Seconds of a simulated scan with no new device after which --auto-pair pairs what it
heard (the simulated scanner polls every 0.2 s; the scan's whole time is the most)."""


async def auto_pair(daemon: Any) -> None:
    """Pair every simulated device not paired yet (the quick start's main job)."""
    from devices.discovery import scan

    # The simulated radio answers every poll with every device it serves: a scan that
    # heard nothing new for AUTO_PAIR_SETTLE_S has heard them all.
    found = await scan(daemon.scan_timeout, radio_path=daemon.radio_path, settle=AUTO_PAIR_SETTLE_S)
    paired = {e.record.address.upper() for e in daemon.supervisor.devices.values()}
    for f in found:
        if f.address.upper() in paired:
            continue
        record = await daemon.pair(f.address, kind=f.kind.value, model=f.model, pulse=False)
        print(f"paired {record.name}: {record.model} at {f.address}", file=sys.stderr)


async def _watchdog(interval: float) -> None:
    import asyncio

    from controller import sdnotify

    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


# -- commands that talk to the daemon --------------------------------------------------


async def _call(socket: Path, command: str, payload: dict[str, Any] | None = None) -> Any:
    from controller import control

    answer = await control.call(socket, command, payload)
    if answer.get("status") != "ok":
        raise MassagedError(str(answer.get("error") or answer))
    return answer.get("data")


def cmd_simple(args: argparse.Namespace) -> int:
    """stop, emergency-stop, pause, resume, gentler, status: through the daemon.

    controller.cli.main tries the quick path (controller.quick_control) first;
    this runs when it did not take the command (options spelt in a way it does
    not parse, or a configuration it cannot vouch for). It validates the whole
    configuration, so a bad one is reported, then sends through the quick
    path's client, so both paths print the same answers and errors.
    """
    config = load(args)
    return quick_control.run_command(
        Path(config.daemon.socket), args.api_command, as_json=args.json
    )


def cmd_scan(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """List devices found nearby (through the daemon when it runs)."""
    return _scan(args, load(args))  # the options checked before asyncio loads


async def _scan(args: argparse.Namespace, config: Any) -> int:
    timeout = args.timeout or config.daemon.scan_timeout
    try:
        if no_socket_at(Path(config.daemon.socket)):
            # What the client would find, without loading it (and the API's models).
            raise DaemonNotRunningError(f"no massaged daemon on {config.daemon.socket}")
        found = await _call(Path(config.daemon.socket), "scan", {"timeout": timeout})
    except DaemonNotRunningError:
        from devices.discovery import scan

        _, _, radio = _simulator_link(config)
        results = await scan(timeout, radio_path=radio)
        found = [
            {
                "kind": f.kind.value,
                "model": f.model,
                "address": f.address,
                "name": f.name,
                "transport": f.transport,
                "rssi": f.rssi,
                "paired": None,
            }
            for f in results
        ]
    if args.json:
        output.print_json(found)
        return 0
    if not found:
        print("nothing found (is the device on and in range? for simulated devices: --simulator)")
        return 0
    rows = [
        (
            f["kind"],
            f.get("model") or "",  # a daemon from before models names none
            f["address"],
            f["name"],
            f["transport"],
            "" if f["rssi"] is None else f["rssi"],
            "paired" if f.get("paired") else "",
        )
        for f in found
    ]
    output.print_table(("KIND", "MODEL", "ADDRESS", "NAME", "LINK", "RSSI", ""), rows, right=(5,))
    return 0


def cmd_pair(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Pair one device: identify it, pulse it gently, ask the user, store it."""
    check_paths(args)
    if not args.yes and not output.interactive():
        # Before scanning and pulsing, and before the configuration's models load: the
        # question at the end could not be asked.
        raise NoTerminalError(
            "pair asks whether you felt the pulse, and there is no terminal to ask on: "
            "add --yes (and give the device's ADDRESS if several are near)"
        )
    return _pair(args, load(args))  # the options checked before asyncio loads


async def _pair(args: argparse.Namespace, config: Any) -> int:
    # Pairing's layers once the options are known to be good.
    import asyncio

    from controller import pairing
    from controller.store import Store
    from devices.discovery import scan
    from devices.errors import LinkError

    backend, ble_kwargs, radio = _simulator_link(config)
    store = Store.open(config.store.path)
    try:
        paired = {r.address.upper() for r in store.list_devices()}
        try:
            found_all = await scan(config.daemon.scan_timeout, radio_path=radio)
        except LinkError:
            if args.address is None or args.kind is None:
                raise
            found_all = []  # address and kind given: connecting says what is wrong, if anything
        candidates = [f for f in found_all if f.address.upper() not in paired]
        address = args.address
        found = None
        if address is None:
            if not candidates:
                raise ConfigError("no unpaired device found; give its ADDRESS (or --simulator)")
            if len(candidates) > 1:
                found = await _choose(candidates, yes=args.yes)
            else:
                found = candidates[0]
            address = found.address
        else:
            found = next((f for f in found_all if f.address.upper() == address.upper()), None)
        if address.upper() in paired:
            raise ConfigError(f"{address} is already paired")
        kind = pairing.kind_of(found, args.kind, address)
        transport = pairing.transport_for(address, found)
        print(f"connecting to the {kind.value} at {address} ...")
        device, caps = await pairing.identify(
            kind,
            address,
            transport=transport,
            model=pairing.model_of(found, kind),
            ble_backend=backend,
            ble_kwargs=ble_kwargs,
        )
        try:
            print(f"found {caps.model}" + (f", firmware {caps.firmware}" if caps.firmware else ""))
            print("sending a short, gentle pulse: put your hand on the device")
            await pairing.confirmation_pulse(device)
        finally:
            await device.close()
        if not args.yes:
            question = "did you feel the pulse on your device? [y/N] "
            answer = await asyncio.to_thread(
                output.ask, question, answered_by="add --yes if you felt it"
            )
            if answer.lower() not in ("y", "yes"):
                raise MassagedError("not paired: try again with the device in your hand")
        record = pairing.record_device(
            store, kind, address, transport=transport, capabilities=caps, name=args.name
        )
    finally:
        store.close()
    print(f"paired {record.name}: {record.model} at {record.address}")
    with contextlib.suppress(MassagedError):
        await _call(Path(config.daemon.socket), "reload")
    return 0


async def _choose(candidates: list[Any], *, yes: bool) -> Any:
    """The device the user picks among several unpaired ones; never a silent guess.

    --yes answers the pulse question only: with several devices it would have to
    guess which one is meant, so it refuses and lists them instead.
    """
    import asyncio

    rows = [(i, f.kind.value, f.address, f.name) for i, f in enumerate(candidates, 1)]
    listing = "; ".join(f"{f.kind.value} {f.address}" for f in candidates)
    if yes or not output.interactive():
        why = "--yes cannot choose" if yes else "no terminal to ask on"
        raise ConfigError(
            f"{len(candidates)} unpaired devices found ({listing}): {why}; "
            "give the ADDRESS of the one to pair"
        )
    output.print_table(("#", "KIND", "ADDRESS", "NAME"), rows, right=(0,))
    choice = await asyncio.to_thread(
        output.ask,
        f"which one? [1-{len(candidates)}] ",
        answered_by="give the ADDRESS of the one to pair",
    )
    if not choice.isdigit() or not 1 <= int(choice) <= len(candidates):
        raise ConfigError(f"nothing paired: {choice!r} is not a number from 1 to {len(candidates)}")
    return candidates[int(choice) - 1]


def cmd_devices(args: argparse.Namespace) -> Coroutine[Any, Any, int] | int:
    """List, rename, unpair, set caps: through the daemon when it runs, else in the store."""
    db: Path | None = getattr(args, "db", None)
    if db is not None and _surely_no_daemon(args):
        # The store will be opened here, so a --db it would refuse (a folder, a file that
        # is not a database) is refused now, in its words, before the settings' models
        # load: as a --db in a missing folder is (check_paths).
        check_paths(args)
        if _devices_request(args)[0] == "devices":  # a listing only reads
            store_paths.database_to_read(db)
        else:
            store_paths.check_database_to_open(db)
    settings = load_settings(args)  # the options checked before asyncio loads
    if no_socket_at(settings.socket):
        # Nothing at the socket: no daemon answers (the client would say so), so the
        # store is used at once, without asyncio and the client loaded to find that out.
        command, payload = _devices_request(args)
        devices = _devices_offline(settings.db, command, payload)
        return _show_devices(args, command, devices, payload)
    return _devices(args, settings)


def _surely_no_daemon(args: argparse.Namespace) -> bool:
    """True when the light rules are sure of the control socket and nothing is there."""
    config: Path | None = getattr(args, "config", None)
    given: Path | None = getattr(args, "socket", None)
    try:
        socket = quick_control.control_socket(
            socket_flag=None if given is None else str(given),
            config_flag=None if config is None else str(config),
        )
    except quick_control.FallBack:
        return False
    return no_socket_at(socket)


def _devices_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The control request of a devices action: its command and payload."""
    action = args.devices_command
    if action == "rename":
        return "rename", {"name": args.name, "new_name": args.new_name}
    if action == "unpair":
        return "unpair", {"name": args.name}
    if action == "set":
        return "set_caps", {"name": args.name, "max_intensity": args.max_intensity}
    return "devices", {}


async def _devices(args: argparse.Namespace, settings: Settings) -> int:
    command, payload = _devices_request(args)
    try:
        data = await _call(settings.socket, command, payload)
        devices = data if command == "devices" else None
    except DaemonNotRunningError:
        devices = _devices_offline(settings.db, command, payload)
    return _show_devices(args, command, devices, payload)


def _show_devices(
    args: argparse.Namespace,
    command: str,
    devices: list[dict[str, Any]] | None,
    payload: dict[str, Any],
) -> int:
    """Print what a devices action did, or the devices listed."""
    if command != "devices":
        print(_done(command, payload))
        return 0
    assert devices is not None
    if getattr(args, "json", False):
        output.print_json(devices)
        return 0
    if not devices:
        print("no paired devices: 'massaged scan' then 'massaged pair'")
        return 0
    rows = []
    for d in devices:
        cap = d.get("caps", {}).get(d["kind"])
        cap_text = "" if cap is None else f"{cap:.0%}"
        rows.append(
            (d["name"], d["kind"], d.get("model", ""), d["address"], d.get("link", "-"), cap_text)
        )
    output.print_table(("NAME", "KIND", "MODEL", "ADDRESS", "LINK", "CAP"), rows)
    return 0


def _done(command: str, payload: dict[str, Any]) -> str:
    """What a devices action did, as a sentence."""
    if command == "rename":
        return f"renamed {payload['name']} to {payload['new_name']}"
    if command == "unpair":
        return f"unpaired {payload['name']}: the daemon no longer connects to it"
    if command == "set_caps":
        return f"{payload['name']}: at most {payload['max_intensity']:.0%} of its maximum"
    return f"{command}: done"


def _devices_offline(
    db: Path, command: str, payload: dict[str, Any]
) -> list[dict[str, Any]] | None:
    if command != "devices":  # a listing takes no arguments: nothing to validate
        from controller import api

        api.parse_request(command, payload)  # the same validation as through the daemon
    # A wrong --db is refused before the store loads (the same errors as opening it).
    if command == "devices":
        store_paths.database_to_read(db)
    else:
        store_paths.check_database_to_open(db)
    from controller.store import Store

    # Listing only reads: it creates no database and changes nothing (issue 13).
    opener = Store.open_for_reading if command == "devices" else Store.open
    store = opener(db)
    try:
        if command == "rename":
            # Only here: pairing loads the drivers' layers (asyncio, the device kinds).
            from controller import pairing

            pairing.check_name(payload["new_name"])
            store.update_device(payload["name"], name=payload["new_name"])
            return None
        if command == "unpair":
            if not store.remove_device(payload["name"]):
                raise ConfigError(f"no paired device {payload['name']!r}")
            return None
        if command == "set_caps":
            record = store.get_device(payload["name"])
            caps = {**record.caps, record.kind.value: payload["max_intensity"]}
            store.update_device(payload["name"], caps=caps)
            return None
        return [
            {
                "name": r.name,
                "kind": r.kind.value,
                "model": r.model,
                "address": r.address,
                "link": "(no daemon)",
                "caps": dict(r.caps),
            }
            for r in store.list_devices()
        ]
    finally:
        store.close()
