"""The command line's quick path for emergency-stop and the other simple commands.

controller.quick_control sends them without importing pydantic, asyncio or
the command modules, so that ``massaged emergency-stop`` starts in
milliseconds. These tests hold it to the full path: the same socket by the
same rules (or a fall-back to the full path, which then names the problem),
the same request on the wire, the same output and exit codes, and none of the
slow imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import api, cli, config, control, paths, quick_control
from controller.commands import daemon as daemon_command
from controller.control import ControlServer
from controller.errors import ControlError
from devices.errors import ConfigError, MassagedError

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0
SLOW_MODULES = ("pydantic", "asyncio", "aiomqtt", "bleak")
"""What the quick path must never import: the start-up time it exists to avoid."""
STOPPED = {"stopped": ["belt", "pillow"]}
STATUS: dict[str, Any] = {
    "devices": [
        {
            "name": "belt",
            "kind": "belt",
            "link": "up",
            "battery": None,
            "in_session": True,
            "last_error": None,
        },
        {
            "name": "pillow",
            "kind": "pillow",
            "link": "down",
            "battery": 80,
            "in_session": False,
            "last_error": "link lost",
        },
    ],
    "session": {
        "program": "collar-zone",
        "state": "running",
        "step": 2,
        "step_count": 7,
        "step_label": "kneading",
        "remaining": 212.4,
    },
    "last_session": None,
}
STATUS_TEXT = (
    "2 paired device(s)\n"
    "  NAME    KIND    LINK  BATTERY\n"
    "  belt    belt    up    mains, in session\n"
    "  pillow  pillow  down  80 %  (link lost)\n"
    "session collar-zone: running, step 3/7 kneading, 212 s left\n"
)


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no MASSAGED_ or XDG_ variable, HOME and the config dir in tmp."""
    for name in list(os.environ):
        if name.startswith(("MASSAGED_", "XDG_")):
            monkeypatch.delenv(name)
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    # Never the developer's own configuration file.
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(tmp_path / "conf"))
    return folder


@pytest.fixture
def short() -> Iterator[Path]:
    """A folder with a short path: Unix socket paths are limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="msd-q-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def subprocess_env(folder: Path) -> dict[str, str]:
    """The environment for a command line process: no MASSAGED_ setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSAGED_")}
    env["MASSAGED_CONFIG_DIR"] = str(folder / "conf")
    env["MASSAGED_DATA_DIR"] = str(folder / "data")
    return env


def full_socket(flags: list[str]) -> Path:
    """The socket the full command line would use (its parser, then commands.daemon.load)."""
    args = cli.build_parser().parse_args(["emergency-stop", *flags])
    return Path(daemon_command.load(args).daemon.socket)


def quick_socket(flags: list[str]) -> Path:
    """The socket the quick path would use; FallBack when it leaves it to the full path."""
    request = quick_control.parse(["emergency-stop", *flags])
    assert request is not None, flags
    return quick_control.control_socket(socket_flag=request.socket, config_flag=request.config)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


class RecordingAPI:
    """A DaemonAPI that records each command; stop fails, as with no session running."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def handle(self, command: str, request: api.Request) -> Any:
        self.commands.append(command)
        if command == "stop":
            raise MassagedError("no session running")
        if command == "status":
            return STATUS
        return STOPPED


class FakeDaemon:
    """One connection on a Unix socket, in a thread: records the request line, sends answer.

    answer None: close without answering; hold: keep the connection open, silent.
    """

    def __init__(self, path: Path, answer: bytes | None, *, hold: bool = False) -> None:
        self.path = path
        self.answer = answer
        self.hold = hold
        self.request = b""
        self._release = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(WAIT)
        self._server.close()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            while not self.request.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                self.request += chunk
            if self.hold:
                self._release.wait(WAIT)
            elif self.answer is not None:
                conn.sendall(self.answer)


def answer_line(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode() + b"\n"


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["emergency-stop"], ("emergency_stop", 0, None, None, False)),
        (["stop", "--socket", "/s"], ("stop", 0, None, "/s", False)),
        (["pause", "--socket=/s", "--config=/c"], ("pause", 0, "/c", "/s", False)),
        (["-v", "resume", "--config", "/c", "--db", "/d"], ("resume", 1, "/c", None, False)),
        (["-vv", "--verbose", "gentler"], ("gentler", 3, None, None, False)),
        (["status", "--json", "--socket", "/a", "--socket", "/b"], ("status", 0, None, "/b", True)),
        (["status", "--socket", "~/s"], ("status", 0, None, "~/s", False)),
    ],
)
def test_the_quick_path_takes_the_plain_spellings(
    argv: list[str], expected: tuple[str, int, str | None, str | None, bool]
) -> None:
    request = quick_control.parse(argv)
    assert request is not None
    got = (request.api_command, request.verbose, request.config, request.socket, request.as_json)
    assert got == expected
    # And argparse reads them the same way.
    args = cli.build_parser().parse_args(argv)
    assert args.api_command == request.api_command
    assert args.verbose == request.verbose
    assert args.json == request.as_json
    assert args.socket == (None if request.socket is None else Path(request.socket))
    assert args.config == (None if request.config is None else Path(request.config))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-h"],
        ["--help"],
        ["emergency-stop", "-h"],
        ["emergency-stop", "--help"],
        ["run", "collar-zone"],
        ["devices"],
        ["emergency-stop", "extra"],
        ["emergency-stop", "-v"],
        ["emergency-stop", "--sock", "/s"],  # an abbreviation: argparse decides
        ["emergency-stop", "--socket"],
        ["emergency-stop", "--socket", ""],
        ["emergency-stop", "--socket="],
        ["emergency-stop", "--socket", "-x"],
        ["emergency-stop", "--json=yes"],
        ["emergency-stop", "--"],
        ["--json", "emergency-stop"],
        ["--verbose=2", "emergency-stop"],
        ["-vq", "emergency-stop"],
        ["-", "emergency-stop"],
        ["--", "emergency-stop"],
    ],
)
def test_anything_else_goes_to_the_full_parser(argv: list[str]) -> None:
    assert quick_control.parse(argv) is None


def test_the_simple_commands_are_registered_from_one_table() -> None:
    parser = cli.build_parser()
    for name, (command, _) in quick_control.SIMPLE_COMMANDS.items():
        args = parser.parse_args([name])
        assert args.func is daemon_command.cmd_simple
        assert args.api_command == command
        assert command in api.COMMANDS


def test_the_mirrored_constants_agree_with_the_full_configuration() -> None:
    assert set(config.sections()) == quick_control.SECTIONS
    assert set(config.DaemonSettings.model_fields) == quick_control.DAEMON_KEYS
    assert quick_control.CONFIG_ENV == config.CONFIG_ENV
    assert quick_control.CONFIG_FILENAME == config.CONFIG_FILENAME
    assert config.env_var("daemon", "socket") == quick_control.DAEMON_ENV_PREFIX + "SOCKET"
    assert quick_control.CALL_TIMEOUT == control.DEFAULT_CALL_TIMEOUT
    # One implementation of the default socket, re-exported by controller.config.
    assert config.default_control_socket is paths.default_control_socket


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        (None, {}),
        (None, {"MASSAGED_CONFIG_DIR": "/etc/massaged"}),
        (None, {"XDG_CONFIG_HOME": "/home/u/.config"}),
        (None, {"MASSAGED_CONFIG": "~/m.toml", "HOME": "/home/u"}),
        (None, {"MASSAGED_CONFIG": "", "MASSAGED_CONFIG_DIR": "/etc/massaged"}),
        ("~/x.toml", {"MASSAGED_CONFIG": "/elsewhere.toml", "HOME": "/home/u"}),
        ("rel/x.toml", {}),
    ],
)
def test_the_configuration_file_is_the_full_paths_file(
    flag: str | None, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`massaged config path` (and the quick path) find the file as controller.config does."""
    if "HOME" in env:
        monkeypatch.setenv("HOME", env["HOME"])  # expanduser reads the process's own
    full = config.config_path(None if flag is None else Path(flag), environ=env)
    assert quick_control.config_location(flag, env) == (full.path, full.explicit)


# -- which socket ------------------------------------------------------------------------

# (id, flags, environment, files): "{tmp}" is the test's folder, "{home}" its HOME.
SOCKET_CASES: list[tuple[str, list[str], dict[str, str], dict[str, str]]] = [
    ("runtime dir", [], {"XDG_RUNTIME_DIR": "{tmp}/run"}, {}),
    ("no runtime dir", [], {}, {}),
    ("relative runtime dir", [], {"XDG_RUNTIME_DIR": "run"}, {}),
    ("runtime dir with ~ (relative: ignored)", [], {"XDG_RUNTIME_DIR": "~/run"}, {}),
    ("flag", ["--socket", "{tmp}/flag.sock"], {}, {}),
    ("flag with =", ["--socket={tmp}/flag.sock"], {}, {}),
    ("flag with ~", ["--socket", "~/flag.sock"], {}, {}),
    ("relative flag", ["--socket", "rel/flag.sock"], {}, {}),
    ("variable", [], {"MASSAGED_DAEMON_SOCKET": "{tmp}/env.sock"}, {}),
    ("variable with ~", [], {"MASSAGED_DAEMON_SOCKET": "~/env.sock"}, {}),
    ("variable, lower-case key", [], {"MASSAGED_DAEMON_socket": "{tmp}/env.sock"}, {}),
    (
        "flag over variable and file",
        ["--socket", "{tmp}/flag.sock", "--config", "{tmp}/my.toml"],
        {"MASSAGED_DAEMON_SOCKET": "{tmp}/env.sock"},
        {"my.toml": '[daemon]\nsocket = "{tmp}/file.sock"\n'},
    ),
    (
        "variable over file",
        ["--config", "{tmp}/my.toml"],
        {"MASSAGED_DAEMON_SOCKET": "{tmp}/env.sock"},
        {"my.toml": '[daemon]\nsocket = "{tmp}/file.sock"\n'},
    ),
    (
        "--config",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[daemon]\nsocket = "{tmp}/file.sock"\n'},
    ),
    (
        "--config with ~, socket with ~",
        ["--config", "~/my.toml"],
        {},
        {"home/my.toml": '[daemon]\nsocket = "~/file.sock"\n'},
    ),
    (
        "$MASSAGED_CONFIG",
        [],
        {"MASSAGED_CONFIG": "{tmp}/named.toml"},
        {"named.toml": '[daemon]\nsocket = "{tmp}/named.sock"\n'},
    ),
    (
        "$MASSAGED_CONFIG with ~",
        [],
        {"MASSAGED_CONFIG": "~/named.toml"},
        {"home/named.toml": '[daemon]\nsocket = "{tmp}/named.sock"\n'},
    ),
    (
        "--config over $MASSAGED_CONFIG",
        ["--config", "{tmp}/my.toml"],
        {"MASSAGED_CONFIG": "{tmp}/named.toml"},
        {
            "my.toml": '[daemon]\nsocket = "{tmp}/file.sock"\n',
            "named.toml": '[daemon]\nsocket = "{tmp}/named.sock"\n',
        },
    ),
    (
        "default file in $MASSAGED_CONFIG_DIR",
        [],
        {"MASSAGED_CONFIG_DIR": "{tmp}/cfg"},
        {"cfg/config.toml": '[daemon]\nsocket = "{tmp}/default-file.sock"\n'},
    ),
    (
        "$MASSAGED_CONFIG_DIR with ~",
        [],
        {"MASSAGED_CONFIG_DIR": "~/cfg"},
        {"home/cfg/config.toml": '[daemon]\nsocket = "{tmp}/default-file.sock"\n'},
    ),
    (
        "default file in $XDG_CONFIG_HOME",
        [],
        {"MASSAGED_CONFIG_DIR": "", "XDG_CONFIG_HOME": "{tmp}/xdg"},
        {"xdg/massaged/config.toml": '[daemon]\nsocket = "{tmp}/xdg.sock"\n'},
    ),
    (
        "default file in ~/.config",
        [],
        {"MASSAGED_CONFIG_DIR": ""},
        {"home/.config/massaged/config.toml": '[daemon]\nsocket = "{tmp}/dot-config.sock"\n'},
    ),
    (
        "a file without the socket: the default",
        ["--config", "{tmp}/my.toml"],
        {"XDG_RUNTIME_DIR": "{tmp}/run"},
        {"my.toml": '[session]\nprofile = "ann"\n[daemon]\nlog_level = "debug"\n'},
    ),
    ("an empty file", ["--config", "{tmp}/my.toml"], {}, {"my.toml": ""}),
    (
        "a relative socket in the file",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[daemon]\nsocket = "rel.sock"\n'},
    ),
    (
        "dotted key",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": 'daemon.socket = "{tmp}/dotted.sock"\n'},
    ),
    (
        "inline table",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": 'daemon = {{ socket = "{tmp}/inline.sock" }}\n'},
    ),
    (
        "other [daemon] settings from the environment",
        [],
        {"MASSAGED_DAEMON_LOG_LEVEL": "debug", "MASSAGED_DAEMON_SOCKET_GROUP": "users"},
        {},
    ),
    ("--db is accepted", ["--db", "{tmp}/x.db", "--socket", "{tmp}/flag.sock"], {}, {}),
]


def apply(
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    env: dict[str, str],
    files: dict[str, str | bytes],
) -> list[str]:
    """Write the files, set the environment; the flags with their placeholders filled."""

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{home}", str(home))

    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, fill(value))
        else:
            monkeypatch.delenv(name, raising=False)
    for name, content in files.items():
        if isinstance(content, str):
            content = fill(content).replace("{{", "{").replace("}}", "}")
        write(tmp_path / name, content)
    monkeypatch.chdir(tmp_path)
    return [fill(flag) for flag in flags]


@pytest.mark.parametrize(
    ("flags", "env", "files"),
    [case[1:] for case in SOCKET_CASES],
    ids=[case[0] for case in SOCKET_CASES],
)
def test_the_socket_is_the_full_paths_socket(
    flags: list[str],
    env: dict[str, str],
    files: dict[str, str | bytes],
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filled = apply(tmp_path, home, monkeypatch, flags, env, files)
    expected = full_socket(filled)
    assert quick_socket(filled) == expected
    assert "~" not in str(expected)


def test_the_default_socket_without_a_runtime_dir(home: Path) -> None:
    assert quick_socket([]) == Path(f"/tmp/massaged-{os.getuid()}/control.sock")


# (id, flags, environment, files, what the full path's error says)
FALL_BACK_CASES: list[tuple[str, list[str], dict[str, str], dict[str, str | bytes], str]] = [
    (
        "broken TOML",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[daemon]\nsocket = "/x.sock\n'},
        "line 2: not valid TOML",
    ),
    (
        "broken default file",
        [],
        {},
        {"conf/config.toml": "[daemon\n"},
        "not valid TOML",
    ),
    (
        "socket is a number",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": "[daemon]\nsocket = 5\n"},
        "[daemon] socket",
    ),
    (
        "socket is a table",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[daemon.socket]\npath = "/x.sock"\n'},
        "[daemon] socket",
    ),
    (
        "broken file, even with --socket",
        ["--socket", "{tmp}/flag.sock", "--config", "{tmp}/my.toml"],
        {},
        {"my.toml": "[daemon]\nsocket = 5\n"},
        "[daemon] socket",
    ),
    (
        "a misspelt key",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[daemon]\nsockt = "/x.sock"\n'},
        "[daemon] sockt: unknown key (did you mean 'socket'?)",
    ),
    (
        "a misspelt section",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": '[deamon]\nsocket = "/x.sock"\n'},
        "unknown section [deamon] (did you mean [daemon]?)",
    ),
    (
        "a key outside every section",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": 'socket = "/x.sock"\n'},
        "a setting outside every section; it belongs under [daemon]",
    ),
    (
        "[daemon] not a table",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": "daemon = 3\n"},
        "[daemon] must be a table",
    ),
    (
        "not UTF-8",
        ["--config", "{tmp}/my.toml"],
        {},
        {"my.toml": b'[daemon]\nsocket = "\xff"\n'},
        "line 2: not UTF-8 text",
    ),
    (
        "--config missing",
        ["--config", "{tmp}/missing.toml"],
        {},
        {},
        "missing.toml: no such configuration file",
    ),
    (
        "$MASSAGED_CONFIG missing",
        [],
        {"MASSAGED_CONFIG": "{tmp}/missing.toml"},
        {},
        "missing.toml: no such configuration file",
    ),
    (
        "--config unreadable (a folder)",
        ["--config", "{tmp}"],
        {},
        {},
        "cannot read",
    ),
    (
        "a misspelt variable",
        [],
        {"MASSAGED_DAEMON_SOKET": "/x.sock"},
        {},
        "environment variable MASSAGED_DAEMON_SOKET: [daemon] has no setting 'soket'; "
        "did you mean MASSAGED_DAEMON_SOCKET?",
    ),
    (
        "a bare prefix",
        [],
        {"MASSAGED_DAEMON_": "/x.sock"},
        {},
        "environment variable MASSAGED_DAEMON_",
    ),
]


@pytest.mark.parametrize(
    ("flags", "env", "files", "message"),
    [case[1:] for case in FALL_BACK_CASES],
    ids=[case[0] for case in FALL_BACK_CASES],
)
def test_a_doubtful_configuration_falls_back_and_the_full_path_names_it(
    flags: list[str],
    env: dict[str, str],
    files: dict[str, str | bytes],
    message: str,
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    filled = apply(tmp_path, home, monkeypatch, flags, env, files)
    with pytest.raises(quick_control.FallBack):
        quick_socket(filled)
    with pytest.raises(ConfigError):
        full_socket(filled)
    assert cli.main(["emergency-stop", *filled]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("massaged: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("flags", "env", "files"),
    [
        # The full path connects to "." here: doubtful, so it decides.
        (["--config", "{tmp}/my.toml"], {}, {"my.toml": '[daemon]\nsocket = ""\n'}),
        # The full path takes the last in sorted order; which one did the user mean?
        (
            [],
            {"MASSAGED_DAEMON_SOCKET": "{tmp}/a.sock", "MASSAGED_DAEMON_socket": "{tmp}/b.sock"},
            {},
        ),
    ],
    ids=["empty socket", "two variables"],
)
def test_other_doubts_fall_back_too(
    flags: list[str],
    env: dict[str, str],
    files: dict[str, str | bytes],
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filled = apply(tmp_path, home, monkeypatch, flags, env, files)
    with pytest.raises(quick_control.FallBack):
        quick_socket(filled)
    full_socket(filled)  # the full path accepts it and decides


def test_an_empty_variable_is_not_skipped(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MASSAGED_DAEMON_SOCKET="" still overrides the file in the full path: doubtful."""
    file = write(tmp_path / "my.toml", f'[daemon]\nsocket = "{tmp_path}/file.sock"\n')
    monkeypatch.setenv("MASSAGED_DAEMON_SOCKET", "")
    with pytest.raises(quick_control.FallBack):
        quick_socket(["--config", str(file)])
    assert full_socket(["--config", str(file)]) != tmp_path / "file.sock"


def test_settings_that_cannot_move_the_socket_are_not_judged(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in [mqtt] must not hold back an emergency stop (the full path refuses it)."""
    file = write(
        tmp_path / "my.toml",
        f'[daemon]\nsocket = "{tmp_path}/file.sock"\nlog_level = 5\n[mqtt]\nport = "x"\n',
    )
    monkeypatch.setenv("MASSAGED_MQTT_PROT", "1884")
    assert quick_socket(["--config", str(file)]) == tmp_path / "file.sock"
    with pytest.raises(ConfigError):
        full_socket(["--config", str(file)])


# -- end to end --------------------------------------------------------------------------


async def test_emergency_stop_reaches_a_real_control_server(short: Path) -> None:
    path = short / "run" / "control.sock"
    recorder = RecordingAPI()
    server = ControlServer(recorder, path)
    await server.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "controller", "emergency-stop", "--socket", str(path)],
            capture_output=True,
            text=True,
            env=subprocess_env(short),
            cwd=ROOT,
            timeout=WAIT,
        )
    finally:
        await server.close()
    assert done.returncode == 0, done.stderr
    assert recorder.commands == ["emergency_stop"]
    assert done.stdout == "emergency stop: every output of every device is at zero\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["emergency-stop"],
        ["emergency-stop", "--json"],
        ["status"],
        ["status", "--json"],
        ["stop"],  # an error answer
        ["gentler", "--db", "/nonexistent/x.db"],
    ],
)
async def test_the_quick_and_full_paths_print_the_same(
    argv: list[str], short: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = short / "run" / "control.sock"
    recorder = RecordingAPI()
    server = ControlServer(recorder, path)
    await server.start()
    try:
        quick = await asyncio.to_thread(cli.main, [*argv, "--socket", str(path)])
        quick_out = capsys.readouterr()
        full = await asyncio.to_thread(cli._full, [*argv, "--socket", str(path)])
        full_out = capsys.readouterr()
    finally:
        await server.close()
    assert recorder.commands == [quick_control.SIMPLE_COMMANDS[argv[0]][0]] * 2
    assert (quick, quick_out.out, quick_out.err) == (full, full_out.out, full_out.err)
    if argv == ["status"]:
        assert quick_out.out == STATUS_TEXT
    if argv == ["stop"]:
        assert (quick, quick_out.err) == (1, "massaged: error: no session running\n")
        assert quick_out.out == ""


@pytest.mark.parametrize("name", list(quick_control.SIMPLE_COMMANDS))
def test_the_request_on_the_wire(
    name: str, short: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = short / "control.sock"
    with FakeDaemon(path, answer_line({"status": "ok", "data": STOPPED})) as fake:
        code = cli.main([name, "--json", "--socket", str(path)])
    command = quick_control.SIMPLE_COMMANDS[name][0]
    assert fake.request == b'{"command": "%s", "payload": {}}\n' % command.encode()
    assert json.loads(fake.request) == {"command": command, "payload": {}}
    assert code == 0
    assert capsys.readouterr().out == json.dumps(STOPPED, indent=2) + "\n"


def test_no_daemon(short: Path) -> None:
    path = short / "control.sock"
    done = subprocess.run(
        [sys.executable, "-m", "controller", "emergency-stop", "--socket", str(path)],
        capture_output=True,
        text=True,
        env=subprocess_env(short),
        cwd=ROOT,
        timeout=WAIT,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert (
        done.stderr == f"massaged: no massaged daemon on {path}: start it with 'massaged daemon'\n"
    )


def test_a_stale_socket_file_is_no_daemon(
    short: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = short / "control.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays; nothing listens (a daemon that was killed)
    assert cli.main(["stop", "--socket", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"massaged: no massaged daemon on {path}: start it with 'massaged daemon'\n"
    )


def test_no_permission(
    short: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Refused(socket.socket):
        def connect(self, address: Any) -> None:
            raise PermissionError(13, "Permission denied")

    # Only the quick path's module sees this socket class (tests may run as root).
    fake = types.SimpleNamespace(
        socket=Refused, AF_UNIX=socket.AF_UNIX, SOCK_STREAM=socket.SOCK_STREAM
    )
    monkeypatch.setattr(quick_control, "socket", fake)
    path = short / "control.sock"
    assert cli.main(["emergency-stop", "--socket", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"massaged: no permission to reach the daemon on {path} (owner or its group only): "
        "start it with 'massaged daemon'\n"
    )


def test_not_a_directory_is_a_clear_error(
    short: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(short / "file", "") / "control.sock"
    assert cli.main(["emergency-stop", "--socket", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"massaged: error: cannot reach the daemon on {path}: [Errno 20] Not a directory\n"
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            answer_line({"status": "error", "data": {}, "error": "no session running"}),
            "massaged: error: no session running\n",
        ),
        (
            answer_line({"status": "busy"}),
            "massaged: error: {'status': 'busy'}\n",
        ),
        (None, "massaged: error: the daemon closed the connection without an answer\n"),
        (b"not json\n", "massaged: error: the daemon's answer is not JSON: "),
        (b"[1, 2]\n", "massaged: error: the daemon's answer is not a JSON object: [1, 2]\n"),
    ],
    ids=["error answer", "unknown status", "no answer", "not JSON", "not an object"],
)
def test_bad_answers(
    answer: bytes | None,
    message: str,
    short: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = short / "control.sock"
    with FakeDaemon(path, answer):
        code = cli.main(["stop", "--socket", str(path)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith(message)


def test_an_answer_without_a_newline_is_still_read(
    short: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon closed after the answer but before its newline: asyncio's readline reads it."""
    path = short / "control.sock"
    with FakeDaemon(path, json.dumps({"status": "ok", "data": None}).encode()):
        assert cli.main(["pause", "--socket", str(path)]) == 0
    assert capsys.readouterr().out == "session paused\n"


def test_a_silent_daemon_times_out(short: Path) -> None:
    path = short / "control.sock"
    with (
        FakeDaemon(path, None, hold=True),
        pytest.raises(ControlError) as caught,
    ):
        quick_control.call(path, "stop", timeout=0.2)
    assert str(caught.value) == "the daemon did not answer 'stop' in 0.2 s"


@contextlib.contextmanager
def full_backlog(path: Path) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A listening socket whose backlog is full, and the connections queued on it.

    A Unix socket with a full backlog refuses a connection at once (EAGAIN), it
    does not make the client wait.
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(0)
    queued: list[socket.socket] = []
    try:
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(str(path))
            except BlockingIOError:
                client.close()
                break
            queued.append(client)
        yield server, queued
    finally:
        for client in queued:
            client.close()
        server.close()


def test_a_daemon_that_does_not_accept_times_out(short: Path) -> None:
    path = short / "control.sock"
    with full_backlog(path), pytest.raises(ControlError) as caught:
        quick_control.call(path, "emergency_stop", timeout=0.2)
    assert str(caught.value) == f"the daemon on {path} did not accept in 0.2 s"


def test_a_full_backlog_is_retried_until_the_daemon_accepts(short: Path) -> None:
    path = short / "control.sock"
    requests: list[bytes] = []
    with full_backlog(path) as (server, queued):

        def daemon() -> None:
            # Late, then the queue in order: the queued connections say nothing, the last asks.
            server.settimeout(2.0)
            try:
                for _ in range(len(queued) + 1):
                    conn, _ = server.accept()
                    with conn:
                        conn.settimeout(0.05)
                        try:
                            line = conn.recv(4096)
                        except TimeoutError:
                            continue
                        requests.append(line)
                        conn.sendall(answer_line({"status": "ok", "data": {}}))
            except OSError:
                return  # the client gave up first: the assertions below say so

        thread = threading.Timer(0.1, daemon)
        thread.start()
        try:
            answer = quick_control.call(path, "emergency_stop", timeout=WAIT)
        finally:
            thread.join(WAIT)
    assert answer == {"status": "ok", "data": {}}
    assert requests == [b'{"command": "emergency_stop", "payload": {}}\n']


# -- start-up time -----------------------------------------------------------------------

CHECK_MODULES = """
import json, sys
from controller.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""


@pytest.mark.parametrize("with_file", [False, True], ids=["no file", "a configuration file"])
async def test_the_quick_path_imports_nothing_slow(with_file: bool, short: Path) -> None:
    """The regression guard for the emergency stop's start-up time (not timed: checked)."""
    path = short / "run" / "control.sock"
    env = subprocess_env(short)
    if with_file:
        write(short / "conf" / "config.toml", f'[daemon]\nsocket = "{path}"\n[mqtt]\n')
    recorder = RecordingAPI()
    server = ControlServer(recorder, path)
    await server.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", CHECK_MODULES, str(short / "modules.json"), "emergency-stop"]
            + ([] if with_file else ["--socket", str(path)]),
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=WAIT,
        )
    finally:
        await server.close()
    assert done.returncode == 0, done.stderr
    assert recorder.commands == ["emergency_stop"]
    modules = set(json.loads((short / "modules.json").read_text()))
    assert "controller.quick_control" in modules
    assert ("tomllib" in modules) == with_file
    assert sorted(name for name in modules if name.split(".")[0] in SLOW_MODULES) == []
    assert not {name for name in modules if name.startswith("controller.")} - {
        "controller.cli",
        "controller.errors",  # the exception classes alone: it imports devices.errors only
        "controller.paths",
        "controller.quick_control",
    }


def test_importing_the_command_line_is_cheap() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, controller.cli, controller.quick_control; "
            "print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert [name for name in modules if name.split(".")[0] in SLOW_MODULES] == []
    # What controller.cli imports only on its full path.
    for name in ("inspect", "controller.config", "controller.commands", "devices.capabilities"):
        assert name not in modules


@pytest.mark.parametrize("command", [api for api, _ in quick_control.SIMPLE_COMMANDS.values()])
def test_the_request_line_is_what_json_would_write(command: str) -> None:
    """The request is written without json (imported only after it has gone)."""
    expected = json.dumps({"command": command, "payload": {}}).encode() + b"\n"
    assert quick_control._request_line(command) == expected


@pytest.mark.parametrize("command", ['stop", "x": "', "stop\n", "", "ünïcode"])
def test_a_command_that_is_not_an_identifier_is_refused(command: str) -> None:
    with pytest.raises(ControlError, match="not a control command"):
        quick_control._request_line(command)


# -- a daemon that closes connections unserved ------------------------------------------

BUSY = answer_line({"status": "error", "error": "closed: too many connections", "busy": True})


class ScriptedDaemon:
    """Serves one connection per entry of a script, in a thread: an answer, or None to hang up."""

    def __init__(self, path: Path, script: list[bytes | None]) -> None:
        self.path = path
        self.script = script
        self.requests: list[bytes] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(len(script) + 1)
        self._server.settimeout(0.05)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(WAIT)
        self._server.close()
        self.path.unlink()

    def _serve(self) -> None:
        for answer in self.script:
            while True:
                try:
                    conn, _ = self._server.accept()
                    break
                except TimeoutError:
                    if self._done.is_set():
                        return  # the client is done: the test says what it expected
            with conn:
                conn.settimeout(WAIT)
                request = b""
                while not request.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                if answer is not None:
                    conn.sendall(answer)


OK_ANSWER = answer_line({"status": "ok", "data": STOPPED})


@pytest.mark.parametrize("unserved", [BUSY, None], ids=["told-busy", "hung-up"])
async def test_an_emergency_stop_closed_unserved_is_sent_again(
    short: Path, unserved: bytes | None
) -> None:
    """A flooded daemon closes idle connections to make room: the stop tries again."""
    path = short / "control.sock"
    with ScriptedDaemon(path, [unserved, unserved, OK_ANSWER]) as fake:
        answer = await asyncio.to_thread(quick_control.call, path, "emergency_stop")
    assert answer == {"status": "ok", "data": STOPPED}
    assert fake.requests == [b'{"command": "emergency_stop", "payload": {}}\n'] * 3
    # The asyncio client (massaged run's "e" key, the benchmarks) does the same.
    with ScriptedDaemon(path, [unserved, OK_ANSWER]) as fake:
        assert await control.call(path, "emergency_stop") == answer
    assert len(fake.requests) == 2


@pytest.mark.parametrize("command", ["gentler", "stop", "pause", "resume"])
def test_a_request_not_safe_to_repeat_is_sent_once(short: Path, command: str) -> None:
    """A second gentler would lower once more; a second stop would say no session runs."""
    path = short / "control.sock"
    with ScriptedDaemon(path, [None, OK_ANSWER]) as fake:
        with pytest.raises(ControlError, match="without an answer"):
            quick_control.call(path, command)
        assert len(fake.requests) == 1
    with ScriptedDaemon(path, [BUSY, OK_ANSWER]) as fake:
        answer = quick_control.call(path, command)
    assert answer["busy"] is True
    assert len(fake.requests) == 1


def test_retries_end_with_the_time_out(short: Path) -> None:
    path = short / "control.sock"
    with ScriptedDaemon(path, [BUSY] * 1000):
        answer = quick_control.call(path, "emergency_stop", timeout=1.0)
    assert answer["busy"] is True
