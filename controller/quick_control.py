"""The command line's emergency stop: a tiny synchronous client of the control socket.

``massaged emergency-stop`` must reach every device within 50 ms (p99) of being
typed, Python's own start-up included. A bare interpreter takes about 20 ms;
the full command line (``controller.cli.build_parser``) imports argparse and the
daemon commands' module, whose handler loads and validates the configuration
(pydantic) before sending anything: it took about 230 ms when it imported every
command module. So ``controller.cli.main`` sends the simple control commands
(emergency-stop, stop, pause, resume, gentler, status) through this module
first, and only falls back to the full command line when this module cannot
be sure of what to do.

Why this module must stay light: it imports only the standard library modules
it needs (os, sys, time; socket only when a request is sent, for every command
line imports this module; tomllib only when a configuration file exists; json
only once the request has gone) and the light ``controller.paths`` and
``devices.errors``. Nothing else: no pydantic, no asyncio, no other
project module.
tests/controller/test_quick_control.py checks that pydantic, asyncio, aiomqtt
and bleak stay out of ``sys.modules``; measure with
``python -X importtime -m controller emergency-stop`` before adding an import.

It never guesses. It finds the control socket by exactly the rules of
``controller.commands.daemon.load`` (``--socket``, else
``$MASSAGED_DAEMON_SOCKET``, else ``[daemon] socket`` in the configuration
file, else :func:`controller.paths.default_control_socket`). When anything
that could change that answer is doubtful (a file it cannot read or parse, a
socket that is not a string, a ``[daemon]`` key or ``MASSAGED_DAEMON_*``
variable it does not know, an unknown section), it raises :class:`FallBack`
and the full command line runs instead, which validates everything and names
the problem. Settings that cannot change the socket (``[mqtt]``, ``[store]``,
the other ``[daemon]`` values) are not judged here: a typo there must not stop
an emergency stop from being delivered.

The full command line's ``cmd_simple`` sends through :func:`run_command` too,
so both paths send the same bytes and print the same answers and errors.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from controller import paths
from controller.errors import ConnectionDroppedError, ControlError, DaemonNotRunningError
from devices.errors import ConfigError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping, Sequence
    from types import ModuleType
    from typing import Any

SIMPLE_COMMANDS: dict[str, tuple[str, str]] = {
    # command line name: (control API command, help)
    "stop": ("stop", "stop the running session softly (outputs fade out)"),
    "emergency-stop": ("emergency_stop", "every output of every device to zero at once"),
    "pause": ("pause", "pause the running session"),
    "resume": ("resume", "resume the paused session (a fresh ramp from zero)"),
    "gentler": ("gentler", "it hurts: lower every output now and for the rest of the session"),
    "status": ("status", "what the daemon and its devices are doing"),
}
"""The commands this module sends; controller.commands.daemon registers them from here."""

# Which configuration file is read, and reading it (config_location, read_config_text),
# live here and controller.config uses them: one rule for both. The names below mirror
# controller.config (which cannot be imported here: it needs pydantic);
# tests/controller/test_quick_control.py checks that they agree. If they drift, the
# quick path falls back (a new [daemon] key is "unknown") rather than guess.
CONFIG_ENV = "MASSAGED_CONFIG"
"""Names the configuration file (like --config)."""
CONFIG_FILENAME = "config.toml"
DAEMON_ENV_PREFIX = "MASSAGED_DAEMON_"
SECTIONS = frozenset({"daemon", "store", "session", "mqtt", "web"})
DAEMON_KEYS = frozenset(
    {
        "socket",
        "socket_group",
        "log_level",
        "wire_debug",
        "reconnect_min",
        "reconnect_max",
        "scan_timeout",
        "simulator",
        "simulator_radio",
        "watchdog",
    }
)

CALL_TIMEOUT = 10.0
"""Seconds to connect, and then to send and get the answer (controller.control's default)."""
MAX_ANSWER = 16 * 1024 * 1024
"""A longer answer line is refused: a daemon does not send one."""
_CONNECT_RETRY = 0.001
"""Seconds between connection attempts while the daemon's backlog is full."""
RETRY_SAFE = frozenset({"emergency_stop", "status"})
"""Requests sent again when the daemon closed the connection unserved (a flood of
connections made it close the longest idle one, or it had no descriptor left):
doing them twice does no harm. Never gentler (each one lowers further) or stop
(the second would say "no session running")."""
RETRY_S = 0.005
"""Seconds before such a request is sent again."""


class FallBack(Exception):
    """This module cannot be sure of the socket: run the full command line instead.

    An outcome rather than a failure, hence the name: the caller falls back.
    """


def not_running(path: Path, err: OSError) -> DaemonNotRunningError:
    """What a refused, missing or forbidden control socket means, in both clients' words."""
    if isinstance(err, PermissionError):
        return DaemonNotRunningError(
            f"no permission to reach the daemon on {path} (owner or its group only)"
        )
    return DaemonNotRunningError(f"no massaged daemon on {path}")


class Request:
    """A simple control command as given on the command line."""

    __slots__ = ("api_command", "as_json", "config", "socket", "verbose")

    def __init__(
        self,
        api_command: str,
        *,
        verbose: int = 0,
        config: str | None = None,
        socket: str | None = None,
        as_json: bool = False,
    ) -> None:
        self.api_command = api_command
        self.verbose = verbose
        self.config = config
        self.socket = socket
        self.as_json = as_json

    def __repr__(self) -> str:
        return (
            f"Request({self.api_command!r}, verbose={self.verbose}, config={self.config!r}, "
            f"socket={self.socket!r}, as_json={self.as_json})"
        )


# -- the command line --------------------------------------------------------------------

_VALUE_OPTIONS = ("--config", "--socket", "--db")


def parse(argv: Sequence[str]) -> Request | None:
    """The request when argv is one of the simple commands written plainly; else None.

    Only the plain spellings are taken: ``-v``/``-vv``/``--verbose`` before the
    command, and ``--config P``, ``--socket P``, ``--db P`` (or ``--opt=P``) and
    ``--json`` after it. Anything else (``--help``, an abbreviation argparse
    would accept, a value starting with "-", an empty value, a stray word) is
    None: the full parser then accepts it or explains what is wrong.
    """
    verbose = 0
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        flag = argv[index]
        if flag == "--verbose":
            verbose += 1
        elif len(flag) > 1 and flag[0] == "-" and set(flag[1:]) == {"v"}:
            verbose += len(flag) - 1
        else:
            return None
        index += 1
    if index == len(argv) or argv[index] not in SIMPLE_COMMANDS:
        return None
    values: dict[str, str] = {}
    as_json = False
    rest = argv[index + 1 :]
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--json":
            as_json = True
            continue
        name, equals, value = arg.partition("=")
        if name not in _VALUE_OPTIONS:
            return None
        if not equals:
            if i == len(rest):
                return None  # argparse says "expected one argument"
            value = rest[i]
            i += 1
            if value.startswith("-"):
                return None  # argparse may take it as an option: let it decide
        if not value:
            return None  # an empty path: doubtful, the full path decides
        values[name] = value  # the last one wins, as in argparse
    return Request(
        SIMPLE_COMMANDS[argv[index]][0],
        verbose=verbose,
        config=values.get("--config"),
        socket=values.get("--socket"),
        as_json=as_json,
    )


# -- the control socket ------------------------------------------------------------------


def control_socket(
    *,
    socket_flag: str | None = None,
    config_flag: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The daemon's control socket, by the rules of the full configuration; else FallBack.

    socket_flag is ``--socket``, config_flag is ``--config``. The configuration
    file and the environment are read even when socket_flag is given, because
    the full path refuses a broken configuration whatever the flags say.
    """
    env = os.environ if environ is None else environ
    try:
        from_env = _socket_from_environment(env)
        from_file = _socket_from_file(*config_location(config_flag, env))
        # The first that is set, even if empty: an empty value is doubtful, not unset.
        chosen = next((v for v in (socket_flag, from_env, from_file) if v is not None), None)
        if chosen is None:
            found = paths.default_control_socket(env)
        else:
            _check_path_text(chosen)
            found = Path(chosen)
        # The full path's setting is a "UserPath": a leading ~ is the home directory.
        return found.expanduser()
    except RuntimeError as err:  # expanduser: no home directory, or no such ~user
        raise FallBack(str(err)) from err


def config_location(
    flag: str | Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The configuration file to read and whether it was named (--config, $MASSAGED_CONFIG).

    controller.config.config_path is this with its result named; ``massaged config
    path`` uses this directly, without controller.config's imports.
    """
    env = os.environ if environ is None else environ
    if flag is not None:
        return Path(flag).expanduser(), True
    named = env.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser(), True
    return paths.config_dir(env) / CONFIG_FILENAME, False


def read_config_text(path: Path, explicit: bool) -> str | None:
    """The configuration file's text; None when the default file (not explicit) is missing.

    ConfigError, in controller.config's words, when it cannot be read or is not UTF-8:
    controller.config.load_config reads through this, and the commands call it
    (check_config_file) to refuse such a file before the settings' models load.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such configuration file") from None
        return None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text") from err


def check_config_file(flag: str | Path | None, environ: Mapping[str, str] | None = None) -> None:
    """ConfigError when the configuration file that flag (--config) or the environment
    names cannot be read: what load_config would refuse first, found without loading it."""
    read_config_text(*config_location(flag, environ))


def _socket_from_file(path: Path, explicit: bool) -> str | None:
    """[daemon] socket from the file, None when unset or no default file; else FallBack."""
    try:
        text = read_config_text(path, explicit)
    except ConfigError as err:
        raise FallBack(str(err)) from None
    if text is None:
        return None
    # Imported only here: most set-ups have no configuration file, and tomllib
    # costs a few milliseconds of the emergency stop.
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FallBack(f"{path}: not valid TOML: {err}") from None
    for section, table in data.items():
        # An unknown section or a key outside every section may be a misplaced
        # socket setting: the full path names it.
        if section not in SECTIONS or not isinstance(table, dict):
            raise FallBack(f"{path}: [{section}] is not a section this client knows")
    daemon: dict[str, object] = data.get("daemon", {})
    unknown = sorted(set(daemon) - DAEMON_KEYS)
    if unknown:
        # Perhaps a misspelt "socket": the daemon would not be where the user meant.
        raise FallBack(f"{path}: [daemon] has keys this client does not know: {unknown}")
    value = daemon.get("socket")
    if value is None:
        return None
    if not isinstance(value, str):
        raise FallBack(f"{path}: [daemon] socket is not a string")
    return value


def _socket_from_environment(env: Mapping[str, str]) -> str | None:
    """$MASSAGED_DAEMON_SOCKET (any case after the prefix, like the full path); else FallBack."""
    named: list[str] = []
    for variable in env:
        if not variable.startswith(DAEMON_ENV_PREFIX):
            continue
        key = variable[len(DAEMON_ENV_PREFIX) :].lower()
        if key not in DAEMON_KEYS:
            # Perhaps a misspelt MASSAGED_DAEMON_SOCKET: the full path names it.
            raise FallBack(f"environment variable {variable}: not a [daemon] setting")
        if key == "socket":
            named.append(variable)
    if not named:
        return None
    if len(named) > 1:
        # The full path takes the last in sorted order; a user who set two meant one.
        raise FallBack(f"the socket is set by more than one variable: {sorted(named)}")
    return env[named[0]]


def _check_path_text(text: str) -> None:
    """An empty path or one with a NUL byte is for the full path to judge."""
    if not text or "\0" in text:
        raise FallBack(f"the socket path {text!r} is not usable")


# -- the request -------------------------------------------------------------------------


def call(path: Path, command: str, *, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
    """Send ``{"command": command, "payload": {}}`` on one line and return the answer line.

    The same wire format, error messages and retries as ``controller.control.call``:
    a request in RETRY_SAFE is sent again, within the same time-out, when the
    daemon closed the connection unserved. DaemonNotRunningError when nothing
    listens, ControlError for everything else.
    """
    sockets = _socket_module()
    deadline = time.monotonic() + timeout
    while True:
        left = max(deadline - time.monotonic(), 0.001)
        sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        try:
            _connect(sock, path, left, shown=timeout)
            line = _exchange(sock, command, left, shown=timeout)
        except ConnectionDroppedError:
            if command in RETRY_SAFE and time.monotonic() + RETRY_S < deadline:
                time.sleep(RETRY_S)
                continue
            raise
        finally:
            sock.close()
        import json  # only now: the request has gone (see _request_line)

        try:
            answer = json.loads(line)
        except ValueError as err:
            raise ControlError(f"the daemon's answer is not JSON: {err}") from None
        if not isinstance(answer, dict):
            raise ControlError(f"the daemon's answer is not a JSON object: {answer!r}")
        if (
            answer.get("busy") is True
            and command in RETRY_SAFE
            and time.monotonic() + RETRY_S < deadline
        ):
            time.sleep(RETRY_S)
            continue
        return answer


def __getattr__(name: str) -> ModuleType:
    """This module's socket, imported on first use (PEP 562).

    Every command line imports this module, and socket (with selectors) was its
    slowest import: only a request sent needs it.
    """
    if name != "socket":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import socket

    globals()["socket"] = socket
    return socket


def _socket_module() -> ModuleType:
    """The socket module this module uses (set in its namespace once imported)."""
    module: ModuleType | None = globals().get("socket")
    return module if module is not None else __getattr__("socket")


def _connect(sock: socket.socket, path: Path, timeout: float, *, shown: float) -> None:
    """Connect within timeout; errors name the caller's whole time-out (shown)."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while True:
        try:
            sock.connect(str(path))
            return
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as err:
            raise not_running(path, err) from err
        except BlockingIOError as err:
            # A Unix socket whose backlog is full refuses at once (EAGAIN) instead
            # of waiting: try again until the deadline.
            if time.monotonic() >= deadline:
                raise ControlError(f"the daemon on {path} did not accept in {shown} s") from err
            time.sleep(_CONNECT_RETRY)
        except TimeoutError as err:
            raise ControlError(f"the daemon on {path} did not accept in {shown} s") from err
        except OSError as err:  # not a directory, path too long, ...
            raise ControlError(f"cannot reach the daemon on {path}: {err}") from err


def _request_line(command: str) -> bytes:
    """The request as json.dumps would write it, without importing json.

    json is imported only once the request is on its way: it costs the command
    line's emergency stop about 2 ms of start-up. The commands are identifiers,
    which JSON takes as they are.
    """
    if not command.isidentifier() or not command.isascii():
        raise ControlError(f"not a control command: {command!r}")
    return b'{"command": "%s", "payload": {}}\n' % command.encode()


def _exchange(sock: socket.socket, command: str, timeout: float, *, shown: float) -> bytes:
    """Send the request line and read one answer line; ConnectionDroppedError when it hung up."""
    deadline = time.monotonic() + timeout
    request = _request_line(command)
    received = bytearray()
    try:
        sock.settimeout(timeout)
        sock.sendall(request)
        while b"\n" not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            if len(received) > MAX_ANSWER:
                raise ControlError(f"the daemon's answer is longer than {MAX_ANSWER} bytes")
    except TimeoutError:
        raise ControlError(f"the daemon did not answer {command!r} in {shown} s") from None
    except OSError as err:
        raise ConnectionDroppedError(f"the daemon connection failed: {err}") from err
    if not received:
        raise ConnectionDroppedError("the daemon closed the connection without an answer")
    return bytes(received.partition(b"\n")[0])


# -- the answer --------------------------------------------------------------------------


def run_command(path: Path, api_command: str, *, as_json: bool = False) -> int:
    """Send one simple command, print the answer as the command line shows it; the exit code."""
    try:
        answer = call(path, api_command)
    except DaemonNotRunningError as err:
        print(f"massaged: {err}: start it with 'massaged daemon'", file=sys.stderr)
        return 1
    except ControlError as err:
        print(f"massaged: error: {err}", file=sys.stderr)
        return 1
    if answer.get("status") != "ok":
        print(f"massaged: error: {answer.get('error') or answer}", file=sys.stderr)
        return 1
    data: Any = answer.get("data")  # print_status shows what a status answer holds
    if as_json:
        import json  # loaded by call() already

        print(json.dumps(data, indent=2, default=str))
        return 0
    if api_command == "status":
        print_status(data)
    else:
        print(done_sentence(api_command, data))
    return 0


_DONE = {
    "stop": "stopping the session softly: the outputs fade out",
    "emergency_stop": "emergency stop: every output of every device is at zero",
    "pause": "session paused",
    "resume": "session resumed: the outputs ramp up again from zero",
    "gentler": "gentler for the rest of the session",
}


def done_sentence(api_command: str, data: Any) -> str:
    """What a simple command did, as a sentence (--json prints the daemon's answer instead)."""
    factor = data.get("gentler_factor") if isinstance(data, dict) else None
    if api_command == "gentler" and isinstance(factor, int | float):
        return f"gentler: every output at ×{factor:.2f} for the rest of the session"
    return _DONE.get(api_command, f"{api_command}: done")


def print_status(data: dict[str, Any]) -> None:
    """Human-readable daemon status."""
    # Only now, the request answered: the table formatter is not on the emergency stop's path.
    from controller.output import format_table

    devices = data.get("devices") or []
    print(f"{len(devices)} paired device(s)")
    rows = []
    for d in devices:
        battery = "mains" if d.get("battery") is None else f"{d['battery']} %"
        busy = ", in session" if d.get("in_session") else ""
        error = f"  ({d['last_error']})" if d.get("last_error") else ""
        rows.append((d["name"], d["kind"], d["link"], f"{battery}{busy}{error}"))
    if rows:
        # Columns as wide as their content: a long name or link state keeps them aligned.
        for line in format_table(("NAME", "KIND", "LINK", "BATTERY"), rows):
            print(f"  {line}")
    session = data.get("session")
    if session:
        print(
            f"session {session['program']}: {session['state']}, step "
            f"{(session['step'] or 0) + 1}/{session['step_count']} {session['step_label']}, "
            f"{session['remaining']:.0f} s left"
        )
    else:
        print("no session running")
    last = data.get("last_session")
    if last and not session:
        print(f"last session: {last['program']} {last['outcome']} ({last['reason']})")
