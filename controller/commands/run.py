"""``massaged run PROGRAM``: one massage session on real or simulated devices, in the history."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.argtypes import number, seconds
from controller.commands.config import add_config_option, apply_session_defaults
from controller.commands.profiles import add_db_option, open_store
from controller.courses import after_session_advice
from controller.errors import StoreError
from controller.output import ask, format_time
from controller.paths import check_socket_path, no_socket_at
from controller.profile_terms import DEFAULT_PROFILE_NAME
from controller.readiness import Confirm, postponement, questions, refusal
from devices.errors import ConfigError, LinkBusyError, LinkError, MassagedError, SafetyError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The session's layers (the runner, drivers, profiles, store, programs; asyncio) are
# imported by the functions that use them, when the session is set up: a run that
# fails on its options, and --help, start without them.
if TYPE_CHECKING:
    from typing import Any

    from controller.profiles import Profile
    from controller.session import Outcome, SessionResult, SessionRunner
    from controller.stop_signals import Received
    from controller.store import DeviceRecord, Store
    from devices.capabilities import DeviceKind
    from devices.drivers.base import Device
    from programs.model import Program
    from simulator.fleet import DeviceSpec  # the simulator: only with --simulate

logger = logging.getLogger(__name__)

MAX_SPEED = 120.0
"""The fastest --speed: a 30-minute session in 15 seconds."""
DISPLAY_WAIT_S = 2.0
"""Seconds the live view may take to draw its last frame."""
HISTORY_EXIT_CODE = 1
"""The exit code of a session that ran as usual but whose history could not be written."""
CONNECT_TIMEOUT_S = 10.0
"""The default --timeout: devices.drivers.base.DEFAULT_CONNECT_TIMEOUT, written out.

That module loads asyncio and the drivers' layers, which `run --help` and a run
refused on its options do without; tests/controller/test_cli_startup.py checks
that the two agree.
"""
BUSY_HINT = (
    "is the massaged daemon running? stop it, or leave out --no-daemon and --device "
    "so that the daemon runs the session"
)


def outcome_exit_code(outcome: Outcome) -> int:
    """The exit code for each way a session can end."""
    from controller.session import Outcome

    codes = {
        Outcome.COMPLETED: 0,
        Outcome.STOPPED: 0,
        Outcome.CUT: 0,
        Outcome.FAULT: 1,
        Outcome.EMERGENCY_STOP: 3,
    }
    return codes[outcome]


@dataclass(frozen=True, slots=True)
class Target:
    """A device to run: its kind, address, name and registry caps."""

    kind: DeviceKind
    address: str
    name: str
    transport: str | None = None
    caps: dict[str, float] | None = None
    model: str = ""
    """The registry's model ("": the kind's default), which picks the driver."""


def register(sub: Any) -> None:
    """Add the run command."""
    p = sub.add_parser(
        "run",
        help="run a massage program on the devices, with a live view and safe stops",
        description=(
            "Run a program (a built-in id such as collar-zone, or a TOML file) on the "
            "devices: given with --device, the registered ones, or simulated ones with "
            "--simulate. Keys while running: p pause/resume, g gentler, s stop, "
            "e emergency stop, +/- intensity; Ctrl-C stops softly, twice is an emergency stop. "
            "So do SIGTERM and SIGHUP (the terminal closed): a session started from a "
            "terminal ends with it, unless started with --detach (through the daemon; "
            "massaged attach shows it again)."
        ),
        epilog=(
            "Before the session you confirm that you are well today (asked on a terminal, "
            "or --well), and, where they apply, the profile's caution (--accept-caution) "
            "and a start earlier than the course's spacing or the rest after the last "
            "session (--override-spacing). "
            "Exit status: 0 completed, stopped or cut by the session limit, 1 fault or error "
            "(a refusal, or a session the history could not record), 3 emergency stop, "
            "128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP) for a session a signal "
            "stopped softly."
        ),
    )
    p.add_argument(
        "program",
        metavar="PROGRAM",
        nargs="?",
        help="program id or TOML file (default: [session] default_program, collar-zone)",
    )
    p.add_argument(
        "--device",
        action="append",
        default=[],
        dest="devices",
        metavar="KIND=ADDRESS",
        help="a device (repeatable): belt=/dev/ttyACM0, pillow=AA:BB:CC:DD:EE:FF, ...",
    )
    p.add_argument(
        "--profile",
        metavar="NAME",
        help=f"whose session (default: [session] profile, {DEFAULT_PROFILE_NAME})",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="run on a simulated belt, pillow and butterfly in this process",
    )
    p.add_argument(
        "--sim-device",
        action="append",
        default=[],
        dest="sim_devices",
        metavar="SPEC",
        help="with --simulate: a simulated device (repeatable), as 'massaged simulate --device' "
        "takes it: belt, pillow, butterfly, coyote (a Coyote V2), ... "
        "(default: a belt, a pillow and a butterfly)",
    )
    p.add_argument(
        "--record", type=Path, metavar="FILE", help="with --simulate: write the recording"
    )
    p.add_argument(
        "--speed",
        type=number,
        metavar="N",
        help=f"with --simulate: run the session N times faster (1..{MAX_SPEED:g})",
    )
    p.add_argument(
        "--scale",
        type=number,
        default=1.0,
        metavar="X",
        help="overall intensity 0..1 (default 1; the profile's caps always apply)",
    )
    p.add_argument(
        "--well",
        dest=Confirm.WELL_TODAY.value,
        action="store_true",
        help="confirm that you are well today without being asked (for scripts)",
    )
    p.add_argument(
        "--accept-caution",
        dest=Confirm.ACCEPT_CAUTION.value,
        action="store_true",
        help="accept the profile's caution (complex osteochondrosis) without being asked",
    )
    p.add_argument(
        "--override-spacing",
        dest=Confirm.OVERRIDE_SPACING.value,
        action="store_true",
        help="start although it is earlier than the course's spacing or the rest after "
        "the last session",
    )
    add_db_option(p)
    p.add_argument(
        "--socket",
        type=Path,
        help="a running daemon's control socket (default: from the configuration)",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="through the daemon: start the session and return at once; it runs on "
        "when this terminal goes away (massaged attach shows it, massaged stop stops it)",
    )
    p.add_argument(
        "--no-daemon",
        action="store_true",
        help="drive the devices from this process even when a daemon runs",
    )
    p.add_argument(
        "--no-display",
        action="store_true",
        help="one line per step instead of the live view (also: [session] display = false)",
    )
    add_config_option(p)
    p.add_argument(
        "--timeout",
        type=seconds,
        default=CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"seconds to connect to each device (default {CONNECT_TIMEOUT_S:g})",
    )
    p.set_defaults(func=cmd_run)


def check_options(args: argparse.Namespace) -> float:
    """ConfigError for a combination that cannot run; returns the speed."""
    if args.speed is not None and not args.simulate:
        raise ConfigError(
            "--speed only works with --simulate: real devices always run in real time"
        )
    if args.record is not None and not args.simulate:
        raise ConfigError("--record only works with --simulate: it records simulated devices")
    if args.sim_devices and not args.simulate:
        raise ConfigError("--sim-device only works with --simulate")
    if args.simulate:
        simulated_specs(args)  # a bad spec is named before anything starts
    if args.simulate and args.devices:
        raise ConfigError(
            "--simulate runs its own devices (a belt, a pillow and a butterfly, or those of "
            "--sim-device): leave out --device"
        )
    if getattr(args, "detach", False) and (args.simulate or args.no_daemon or args.devices):
        raise ConfigError(
            "--detach leaves the session to the daemon: it does not go with --simulate, "
            "--no-daemon or --device (a session in this process ends with it)"
        )
    if args.record is not None:
        check_output_file(args.record, "--record")
    speed = 1.0 if args.speed is None else float(args.speed)
    if not math.isfinite(speed) or not 1.0 <= speed <= MAX_SPEED:
        raise ConfigError(f"--speed must be 1..{MAX_SPEED:g}, not {args.speed}")
    if not math.isfinite(args.scale) or not 0.0 <= args.scale <= 1.0:
        raise ConfigError(f"--scale must be 0..1, not {args.scale}")
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, not {args.timeout}")
    return speed


def simulated_specs(args: argparse.Namespace) -> list[DeviceSpec]:
    """The devices --simulate serves: the --sim-device specs, else a belt, pillow, butterfly."""
    from simulator.fleet import DEFAULT_SPECS, parse_spec

    return [parse_spec(spec) for spec in args.sim_devices or DEFAULT_SPECS]


def check_output_file(path: Path, option: str) -> None:
    """ConfigError unless path can be a new or replaced file in an existing folder.

    Never creates the folder: a typo must not leave new folders behind (issue 13).
    """
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name in it")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot write in {folder} (permission denied)")


def parse_device(text: str) -> tuple[DeviceKind, str]:
    """KIND=ADDRESS, naming what is wrong."""
    from devices.capabilities import DeviceKind

    kind_text, sep, address = text.partition("=")
    if not sep or not address.strip():
        raise ConfigError(f"--device {text!r}: expected KIND=ADDRESS, e.g. belt=/dev/ttyACM0")
    try:
        kind = DeviceKind(kind_text.strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in DeviceKind)
        raise ConfigError(
            f"--device {text!r}: unknown kind {kind_text!r}; kinds: {kinds}"
        ) from None
    return kind, address.strip()


def targets_for(args: argparse.Namespace, store: Store) -> list[Target]:
    """The real devices: --device ones (with registry caps by address) or the registered ones."""
    registered = store.list_devices()
    if not args.devices:
        if not registered:
            raise ConfigError(
                "no devices: give --device KIND=ADDRESS (repeatable), register devices, "
                "or try --simulate"
            )
        return [_registered(record) for record in registered]
    targets: list[Target] = []
    counts: dict[DeviceKind, int] = {}
    for text in args.devices:
        kind, address = parse_device(text)
        record = next((r for r in registered if r.kind == kind and r.address == address), None)
        if record is not None:
            targets.append(_registered(record))
            continue
        n = counts[kind] = counts.get(kind, 0) + 1
        targets.append(Target(kind, address, kind.value if n == 1 else f"{kind.value}-{n}"))
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigError(f"a device is given twice: {', '.join(names)}")
    return targets


def _registered(record: DeviceRecord) -> Target:
    return Target(
        record.kind,
        record.address,
        record.name,
        record.transport,
        dict(record.caps),
        model=record.model,
    )


@contextlib.asynccontextmanager
async def real_devices(
    targets: Sequence[Target], timeout: float
) -> AsyncIterator[dict[str, Device]]:
    """Drivers for the targets, all connected; closed (outputs stopped) on the way out."""
    import asyncio

    from devices.kinds import Transport, make_device

    devices: dict[str, Device] = {}
    try:
        for target in targets:
            transport: Transport | None = None
            if target.transport == "serial":
                transport = "serial"
            elif target.transport == "ble":
                transport = "ble"
            devices[target.name] = make_device(
                target.kind,
                target.address,
                model=target.model,
                transport=transport,
                name=target.name,
            )
        results = await asyncio.gather(
            *(d.connect(timeout=timeout) for d in devices.values()), return_exceptions=True
        )
        busy = [
            f"{name}: {result} ({BUSY_HINT})"
            for name, result in zip(devices, results, strict=True)
            if isinstance(result, LinkBusyError)
        ]
        if busy:
            # Another program drives the device: one clear line, nothing else tried.
            raise LinkError("; ".join(busy))
        failed = [
            f"{name} at {devices[name].link.address}: {result}"
            for name, result in zip(devices, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            raise LinkError("cannot connect: " + "; ".join(failed))
        yield devices
    finally:
        await asyncio.gather(*(d.close() for d in devices.values()))


def _print_note(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def stop_on_signals(runner: SessionRunner, note: Any = _print_note) -> Iterator[Received]:
    """Ctrl-C, SIGTERM or SIGHUP stops the session softly, a second one at once."""
    from controller.session import SessionState
    from controller.stop_signals import describe, on_stop_signals

    def stop(sig: Any, count: int) -> None:
        if count == 1 and runner.state != SessionState.ENDED:
            again = "Ctrl-C" if describe(sig) == "Ctrl-C" else "again"
            note(f"{describe(sig)}: stopping softly ({again}: emergency stop)")
            runner.stop()
        else:
            note("EMERGENCY STOP")
            runner.request_emergency_stop()

    with on_stop_signals(stop) as received:
        yield received


async def play(runner: SessionRunner, *, live: bool) -> tuple[SessionResult, Received]:
    """Run the session with the live view (and keys) or one line per step; also returns
    the stop signals received (controller.stop_signals)."""
    import asyncio

    from controller.live import KeyReader, LinePrinter, LiveDisplay

    if not live:
        runner.add_listener(LinePrinter())
        with stop_on_signals(runner) as received:
            return await runner.run(), received
    display = LiveDisplay(runner)
    with stop_on_signals(runner, display.note) as received, KeyReader(display.on_key):
        task = asyncio.get_running_loop().create_task(display.run(), name="live-display")
        try:
            return await runner.run(), received
        finally:
            try:
                async with asyncio.timeout(DISPLAY_WAIT_S):
                    await asyncio.shield(task)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def cmd_run(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Run one session; print the outcome and the after-session advice.

    The options and the configuration are checked here; the session is the coroutine
    returned, which controller.cli runs: a run refused on them does without asyncio.
    So is a session in this process when no daemon can answer (no control socket):
    what could refuse it (the program, the profile, the devices, the confirmations)
    is checked here too.
    """
    speed = check_options(args)  # bad options first: they need nothing loaded
    daemon_first = not args.simulate and not args.devices and not args.no_daemon
    if daemon_first and args.socket:
        check_socket_path(args.socket)  # before the configuration's models load
    # [session] program, profile, display: see docs/configuration.md
    settings = apply_session_defaults(args)
    if daemon_first:
        socket = Path(args.socket or settings.socket)
        check_socket_path(socket)
        if not no_socket_at(socket):
            return _run(args, speed, socket)
        # Nothing at the socket: no daemon answers (the client would say so), and
        # the session runs here without asyncio and the client loaded to find that out.
        _no_daemon(args, socket)
    return _run_here(args, speed)


async def _run(args: argparse.Namespace, speed: float, socket: Path) -> int:
    """The session on the daemon that answers on socket, else in this process."""
    # One process owns the devices: when a daemon runs, the session runs there.
    answer = await _through_daemon(args, socket)
    if answer is not None:
        return answer
    _no_daemon(args, socket)
    return await _run_here(args, speed)


def _no_daemon(args: argparse.Namespace, socket: Path) -> None:
    """ConfigError when no daemon answers and the command line needs one."""
    if args.socket:
        raise ConfigError(f"no daemon answers on {socket}")
    if args.detach:
        raise ConfigError(
            "--detach leaves the session to the daemon, and no daemon answers: "
            "start one (massaged daemon), or run without --detach"
        )


def _run_here(args: argparse.Namespace, speed: float) -> Coroutine[Any, Any, int]:
    """The session in this process: checked now, run by the coroutine returned.

    The program, the profile, the devices and the confirmations are checked
    before the coroutine is made, so a refused session never loads asyncio; the
    store opened for them is the coroutine's to close.
    """
    from programs import library

    program = library.resolve(args.program).program
    # The session's layers once the program is known.
    from controller.session import check_profile

    store = open_store(args)
    try:
        profile = store.get_profile(args.profile or DEFAULT_PROFILE_NAME)
        targets = [] if args.simulate else targets_for(args, store)
        _refuse_a_daemons_devices(store, targets)
        kinds = (
            {spec.kind for spec in simulated_specs(args)}
            if args.simulate
            else {t.kind for t in targets}
        )
        # Before anything is connected: a refused session never touches a device.
        dropped = check_profile(profile, kinds, program.audience.value)
        confirmed = confirm_before(args, profile, store, simulated=args.simulate)
        for kind in sorted(dropped):
            print(f"warning: the {kind.value} is left out for profile {profile.name!r}")
    except BaseException:
        store.close()
        raise
    return _session_here(
        args, speed, program, profile, store, targets, dropped, confirmed.__contains__
    )


async def _session_here(
    args: argparse.Namespace,
    speed: float,
    program: Program,
    profile: Profile,
    store: Store,
    targets: list[Target],
    dropped: frozenset[DeviceKind],
    confirmed: Callable[[Confirm], bool],
) -> int:
    """The session _run_here checked: devices connected, played, recorded; store closed."""
    try:
        from controller.session_setup import prepare_session

        live = not args.no_display and sys.stdout.isatty()
        async with _devices(args, targets, dropped, speed) as devices:
            runner = await prepare_session(
                program,
                profile,
                devices,
                store=store,
                confirmed=confirmed,
                caps={t.name: t.caps for t in targets},
                speed=speed,
                scale=args.scale,
                simulated=args.simulate,
                field_hint=False,
            )
            print(
                f"{program.id}: {program.title}, {format_time(runner.plan.duration)} on "
                f"{', '.join(devices)} for {profile.name}"
                + (f" at ×{speed:g}" if speed != 1.0 else ""),
                flush=True,
            )
            result, received = await play(runner, live=live)
        history_error = _history_error(store, result)
    finally:
        store.close()
    _report(result, recorded=history_error is None)
    if history_error is not None:
        print(f"massaged: error: {history_error}", file=sys.stderr)
        return outcome_exit_code(result.outcome) or HISTORY_EXIT_CODE
    return exit_code(result.outcome, received)


def exit_code(outcome: Outcome, received: Received) -> int:
    """The exit status: by the outcome, or 128 + the signal that stopped the session."""
    from controller.session import Outcome

    code = outcome_exit_code(outcome)
    signalled = received.exit_code()
    if code == 0 and outcome == Outcome.STOPPED and signalled is not None:
        return signalled
    return code


def confirm_before(
    args: argparse.Namespace, profile: Profile, store: Store | None, *, simulated: bool
) -> set[Confirm]:
    """What the person confirms before the session: from the flags, else asked on a
    terminal; SafetyError (one line, naming the flag) when it cannot be or is not given."""
    given = {c for c in Confirm if getattr(args, c.value, False)}
    postponed = postponement(profile)
    if postponed is not None:
        raise SafetyError(postponed)
    for question in questions(profile, store, simulated=simulated):
        if question.confirm in given:
            continue
        if not sys.stdin.isatty():
            raise SafetyError(refusal(question, field_hint=False))
        print(question.reason, flush=True)
        answer = ask(f"{question.prompt} [y/N] ", answered_by=f"add {question.flag}")
        if answer.strip().lower() not in ("y", "yes"):
            if question.confirm == Confirm.WELL_TODAY:
                raise SafetyError("not started: postpone the session until you feel well")
            raise SafetyError(f"not started: {question.reason}")
        given.add(question.confirm)
    return given


def _confirm_for_daemon(args: argparse.Namespace) -> set[Confirm]:
    """confirm_before for a session the daemon runs, from this machine's profile and history.

    The daemon checks again (it is the authority); asking here lets a person answer on
    the terminal instead of reading a refusal.
    """
    from controller.profiles import DEFAULT_PROFILE

    name = args.profile or DEFAULT_PROFILE_NAME
    try:
        with open_store(args) as store:
            profile = store.get_profile(name)
            return confirm_before(args, profile, store, simulated=False)
    except StoreError as err:
        logger.info("the profile is not read here (%s): the daemon checks it", err)
    return confirm_before(args, DEFAULT_PROFILE, None, simulated=False)


def _refuse_a_daemons_devices(store: Store, targets: Sequence[Target]) -> None:
    """MassagedError if a daemon on this database drives one of the targets.

    The serial port's lock refuses a second opener, but Bluetooth does not: on
    Linux, BlueZ lets a second process use a link another one opened. So the
    daemon's devices (every one registered in its database) are its alone.
    """
    from controller.locks import daemon_holding

    pid = daemon_holding(store.path)
    if pid is None:
        return
    registered = {record.address.upper() for record in store.list_devices()}
    theirs = [t.name for t in targets if t.address.upper() in registered]
    if theirs:
        who = "another massaged daemon" + (f" (pid {pid})" if pid else "")
        raise MassagedError(
            f"{who} already uses {store.path} and drives {', '.join(theirs)}: "
            "leave out --no-daemon and --device so that it runs the session, or stop it"
        )


def _history_error(store: Store, result: SessionResult) -> str | None:
    """What the history failed to record of this session, or None if it holds all of it."""
    session_id = result.session_id
    if session_id is None:
        why = (
            f"the database {store.path} is read-only"
            if store.read_only
            else "its start could not be written (see the error above)"
        )
        return f"this session is not in the history: {why}"
    try:
        record = store.get_session(session_id)
    except StoreError as err:
        return f"cannot check the history of this session (#{session_id}): {err}"
    if record.ended_at is not None:
        return None
    # The runner's write failed (the store tried it again a few times) or ran out of
    # time: the session is over and every device stopped, so one more try costs nothing.
    try:
        store.finish_session(
            session_id,
            result.outcome,
            gentler_presses=result.gentler_presses,
            detail={"reason": result.reason, "elapsed": round(result.elapsed, 3)},
        )
    except StoreError as err:
        return (
            f"the end of this session could not be written to the history ({err}); "
            f"#{session_id} stays marked running until the next daemon start closes it as a fault"
        )
    return None


async def _through_daemon(args: argparse.Namespace, socket: Path) -> int | None:
    """Run the session on the daemon at socket; None when no daemon answers."""
    from controller import control

    if not await control.daemon_running(socket):
        return None
    from controller.remote import RemoteSession, run_remote
    from controller.session import Outcome
    from programs.library import user_dir

    if Path(args.program).suffix == ".toml":
        raise ConfigError(
            f"a running daemon plays programs by id: put the file in {user_dir()} "
            "(your programs' folder, $MASSAGED_PROGRAMS_DIR) or use --no-daemon"
        )
    confirmed = _confirm_for_daemon(args)
    live = not args.no_display and sys.stdout.isatty()
    remote = RemoteSession(socket, live=live)
    try:
        result = await run_remote(
            socket,
            args.program,
            profile=args.profile,
            scale=args.scale,
            live=live,
            confirmed=[c.value for c in confirmed],
            detach=args.detach,
            remote=remote,
        )
    except MassagedError as err:
        if "already running" in str(err):
            raise MassagedError(
                f"{err} (massaged attach shows it, massaged stop stops it)"
            ) from err
        raise
    if args.detach:
        return 0
    if result is None:
        print("the session ended (no record of how)")
        return 1
    print(f"session {result['outcome']}: {result['reason']} after {format_time(result['elapsed'])}")
    print(after_session_advice())
    return exit_code(Outcome(result["outcome"]), remote.received)


@contextlib.asynccontextmanager
async def _devices(
    args: argparse.Namespace,
    targets: Sequence[Target],
    dropped: frozenset[DeviceKind],
    speed: float,
) -> AsyncIterator[dict[str, Device]]:
    if args.simulate:
        from controller.simulated import SimulatedDevices

        specs = [s for s in simulated_specs(args) if s.kind not in dropped]
        async with SimulatedDevices(
            specs, speed=speed, record=args.record, connect_timeout=args.timeout
        ) as sim:
            yield sim.devices
        if args.record is not None:
            print(f"recording: {args.record}")
        return
    wanted = [t for t in targets if t.kind not in dropped]
    if not wanted:
        raise MassagedError("no device is left for the session")
    from controller.guard import guarded

    # The host guard ends the BLE links should this process freeze or die mid-session.
    async with guarded(), real_devices(wanted, args.timeout) as devices:
        yield devices


def _report(result: SessionResult, *, recorded: bool = True) -> None:
    where = f" (history #{result.session_id})" if recorded and result.session_id else ""
    presses = result.gentler_presses
    gentler = f"; gentler pressed {presses} time{'s' if presses != 1 else ''}" if presses else ""
    print(
        f"session {result.outcome.value}: {result.reason} after "
        f"{format_time(result.elapsed)}{gentler}{where}"
    )
    for name, state in result.devices.items():
        if state.value not in ("stopped", "dropped"):
            print(f"  {name}: {state.value}")
    print(after_session_advice(result.audience))
