"""What the command line prints, and how it ends, at its edges (issue 13).

--json on every listing command, a description on every help page, --version,
shell completion, tables that fit their content, a closed pipe, Ctrl-C at
start-up, questions without a terminal, TERM=dumb, sentences instead of raw
JSON, and the [session] / [daemon] settings that used to be ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller import cli, output, quick_control
from controller.commands import history
from controller.commands.config import apply_session_defaults
from controller.errors import NoTerminalError
from controller.live import LiveDisplay
from controller.remote import RemoteSession
from controller.session import DeviceSnapshot, DeviceState, Outcome, SessionSnapshot, SessionState
from controller.store import SessionRecord
from devices.capabilities import DeviceKind

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""Seconds a command line process may take on a busy machine."""
SPED_UP = ("--speed", "120", "--well")
"""A simulated session in a few seconds, confirmed for a script."""


def private(folder: Path) -> Path:
    """folder, made and kept private (massaged warns about data open to others)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no MASSAGED_ variable, config and data folders in tmp."""
    for name in list(os.environ):
        if name.startswith(("MASSAGED_", "XDG_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(private(tmp_path / "home")))
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(private(tmp_path / "conf")))
    monkeypatch.setenv("MASSAGED_DATA_DIR", str(private(tmp_path / "data")))
    return tmp_path


@pytest.fixture
def short() -> Iterator[Path]:
    """A folder with a short path: Unix socket paths are limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="msd-o-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def environment(folder: Path, **extra: str) -> dict[str, str]:
    """A command line process's environment: its own folders, none of the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSAGED_")}
    env["MASSAGED_CONFIG_DIR"] = str(private(folder / "conf"))
    env["MASSAGED_DATA_DIR"] = str(private(folder / "data"))
    env.update(extra)
    return env


def massaged(
    env: dict[str, str], *args: str, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """The command line as a script runs it: no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=WAIT,
    )


# -- --json on every listing command ------------------------------------------------------

LISTINGS = [
    ["programs", "list"],
    ["history"],
    ["profiles", "list"],
    ["course", "show"],
    ["config", "show"],
]
"""The listings that had no --json (devices, scan and status have had it from the start)."""


@pytest.mark.parametrize("argv", LISTINGS, ids=" ".join)
def test_every_listing_command_prints_valid_json(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the whole of stdout is one JSON document
    assert "Traceback" not in captured.err


def test_programs_list_json_names_every_program(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["programs", "list", "--json"]) == 0
    programs = {p["id"]: p for p in json.loads(capsys.readouterr().out)}
    assert programs["collar-zone"]["builtin"] is True
    assert programs["collar-zone"]["duration_s"] > 60


def test_config_show_json_masks_the_password(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MASSAGED_MQTT_USERNAME", "massaged")
    monkeypatch.setenv("MASSAGED_MQTT_PASSWORD", "hunter22")
    assert cli.main(["config", "show", "--json"]) == 0
    text = capsys.readouterr().out
    assert "hunter22" not in text
    password = json.loads(text)["settings"]["mqtt"]["password"]
    assert password == {"value": "********", "source": "env"}


# -- help pages, --version, completion ------------------------------------------------------


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _subcommands(child, (*path, name))


def test_every_subcommand_has_a_description() -> None:
    """Each help page says what the command does, not only its usage line."""
    found = list(_subcommands(cli.build_parser()))
    assert len(found) > 30  # the walk reaches nested commands (programs list, devices set, ...)
    missing = [" ".join(path) for path, parser in found if not (parser.description or "").strip()]
    assert missing == []


def test_version(short: Path) -> None:
    done = massaged(environment(short), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("massaged ")
    assert done.stdout.split()[1][0].isdigit()


def test_bash_completion_completes_commands_and_options(short: Path) -> None:
    done = massaged(environment(short), "completion", "bash")
    assert done.returncode == 0, done.stderr
    script = short / "massaged.bash"
    script.write_text(done.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(["massaged", *words])
        probe = (
            f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; "
            '_massaged; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        result = subprocess.run(
            ["bash", "-c", probe], capture_output=True, text=True, timeout=WAIT, cwd=short
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("prog") == ["programs"]
    assert complete("programs", "l") == ["list"]
    assert "--json" in complete("programs", "list", "--")
    assert complete("run", "--rec") == ["--record"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_know_every_command(shell: str, short: Path) -> None:
    done = massaged(environment(short), "completion", shell)
    assert done.returncode == 0, done.stderr
    for path, _ in _subcommands(cli.build_parser()):
        assert path[-1] in done.stdout
    if shell == "fish":
        assert all(
            line.startswith(("#", "complete -c massaged ")) for line in done.stdout.splitlines()
        )


# -- tables ---------------------------------------------------------------------------------


def test_a_table_sizes_its_columns_to_the_content() -> None:
    address = "/dev/serial/by-id/usb-Massage_Co_VB1_Vibration_Belt_0123456789-if00"
    lines = output.format_table(
        ("NAME", "ADDRESS", "LINK"),
        [("belt", address, "connected"), ("pillow-in-the-living-room", "AA:BB", "lost")],
    )
    columns = [line.index(line.split()[2]) for line in lines]
    assert columns[0] == columns[1] == columns[2]  # the third column starts at one place
    assert all("  " in line for line in lines)


# -- history: program time, not wall time ---------------------------------------------------


def test_history_shows_the_program_time_of_a_sped_up_session() -> None:
    start = datetime(2026, 1, 1, 20, 0, tzinfo=UTC)
    session = SessionRecord(
        id=1,
        program="collar-zone",
        devices=("belt-1",),
        profile="default",
        started_at=start,
        ended_at=start + timedelta(seconds=2.6),  # ×120
        outcome=Outcome.COMPLETED,
        gentler_presses=0,
        detail={"reason": "completed", "elapsed": 315.0},
        simulated=True,
    )
    assert history.program_seconds(session) == 315.0
    assert "5:15" in history._session_row(session)
    assert history._session_data(session)["program_seconds"] == 315.0


# -- closed pipes, Ctrl-C, no terminal -----------------------------------------------------


def _with_closed_stdout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone, as in ``massaged ... | head -0``."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return massaged(env, *args, stdout=writer)
    finally:
        os.close(writer)


def test_a_closed_pipe_ends_a_listing_quietly(short: Path) -> None:
    done = _with_closed_stdout(environment(short), "programs", "list")
    assert done.returncode == 141  # what a shell reports for SIGPIPE
    assert done.stderr == ""


def test_a_closed_pipe_during_a_session_logs_no_traceback(short: Path) -> None:
    """``run ... | head -1``: the session goes on to its end (the pipe is only a view of it),
    silently; the old code logged a traceback for every line after the first."""
    env = environment(short)
    run = subprocess.Popen(
        [sys.executable, "-m", "controller", *("run", "collar-zone", "--simulate"), *SPED_UP],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert run.stdout is not None
    assert run.stderr is not None
    assert run.stdout.readline().startswith("collar-zone: ")
    run.stdout.close()  # head -1 has its line and goes
    err = run.stderr.read()
    run.stderr.close()
    assert run.wait(timeout=WAIT) == 0, err
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    listing = massaged(env, "history", "--json")
    assert [s["outcome"] for s in json.loads(listing.stdout)] == ["completed"]


def test_ctrl_c_during_start_up_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object) -> argparse.ArgumentParser:
        raise KeyboardInterrupt  # as if pressed while pydantic or bleak is imported

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["programs", "list"]) == 130
    assert capsys.readouterr().err == "massaged: interrupted\n"


def test_pair_without_a_terminal_refuses_before_scanning(short: Path) -> None:
    """No simulator runs: the old code scanned first; now the missing terminal is named."""
    done = massaged(environment(short), "pair", "--simulator")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--yes" in done.stderr
    assert "Traceback" not in done.stderr


def test_ask_without_a_terminal_names_what_answers_it() -> None:
    with pytest.raises(NoTerminalError, match="add --yes"):
        output.ask("felt it? [y/N] ", answered_by="add --yes", stdin=io.StringIO("y\n"))


# -- the live view without cursor codes ----------------------------------------------------


class Terminal(io.StringIO):
    """Captured output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _snapshot(step: int) -> SessionSnapshot:
    return SessionSnapshot(
        program_id="collar-zone",
        title="Cervical-collar zone massage",
        state=SessionState.RUNNING,
        step_index=step,
        step_label=f"step {step}",
        step_count=8,
        elapsed=10.0 * step,
        remaining=300.0,
        duration=315.0,
        scale=1.0,
        gentler_presses=0,
        gentler_factor=1.0,
        pause_reasons=(),
        devices={
            "belt-1": DeviceSnapshot(
                name="belt-1",
                kind=DeviceKind.BELT,
                state=DeviceState.RUNNING,
                output={"motor_1": 120},
                link="connected",
            )
        },
    )


class FakeRunner:
    """What LiveDisplay reads of a runner."""

    def __init__(self) -> None:
        self.step = 0
        self.done = asyncio.Event()

    def snapshot(self) -> SessionSnapshot:
        return _snapshot(self.step)


async def test_the_live_view_sends_cursor_codes_only_to_a_capable_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert "\x1b" not in await _live_view_text()
    monkeypatch.setenv("TERM", "xterm-256color")  # the same view can send them: the test sees
    assert "\x1b" in await _live_view_text()


async def _live_view_text() -> str:
    out = Terminal()
    runner = FakeRunner()
    display = LiveDisplay(runner, out=out, refresh_s=0.01)  # type: ignore[arg-type]
    display.draw()
    display.draw()  # nothing changed: no second plain line
    runner.step = 1
    runner.done.set()
    await display.run()
    text = out.getvalue()
    if "\x1b" not in text:
        assert text.splitlines() == [
            "0:00  step 1/8  step 0  running",
            "0:10  step 2/8  step 1  running",
        ]
    return text


def test_the_remote_live_view_obeys_term_dumb(monkeypatch: pytest.MonkeyPatch) -> None:
    for term, codes in (("dumb", False), ("xterm", True)):
        monkeypatch.setenv("TERM", term)
        assert ("\x1b" in _remote_view_text()) is codes, term


def _remote_view_text() -> str:
    out = Terminal()
    remote = RemoteSession(Path("/nonexistent.sock"), out=out, live=True)
    data = {
        "program": "collar-zone",
        "title": "t",
        "state": "running",
        "step": 0,
        "step_label": "Strokes",
        "step_count": 8,
        "elapsed": 1.0,
        "remaining": 300.0,
        "duration": 315.0,
        "scale": 1.0,
        "gentler_presses": 0,
        "gentler_factor": 1.0,
        "pause_reasons": [],
        "devices": {},
    }
    remote._show(data)
    assert "step 1/8" in out.getvalue()
    return out.getvalue()


# -- simple commands print a sentence ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "sentence"),
    [
        ("stop", {"state": "stopping"}, "stopping the session softly"),
        ("pause", {"state": "paused"}, "session paused"),
        ("gentler", {"gentler_factor": 0.8}, "gentler: every output at ×0.80"),
    ],
)
def test_simple_commands_print_a_sentence_not_json(
    name: str,
    data: dict[str, Any],
    sentence: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def call(path: Path, command: str, **_: Any) -> dict[str, Any]:
        return {"status": "ok", "data": data}

    monkeypatch.setattr(quick_control, "call", call)
    assert quick_control.run_command(Path("/s"), name) == 0
    text = capsys.readouterr().out
    assert text.startswith(sentence)
    assert "{" not in text
    assert quick_control.run_command(Path("/s"), name, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == data


# -- settings that used to be ignored -------------------------------------------------------


def test_run_takes_program_profile_and_display_from_the_session_settings(short: Path) -> None:
    env = environment(short)
    (short / "conf" / "config.toml").write_text(
        '[session]\nprofile = "kid"\ndefault_program = "collar-zone-child"\ndisplay = false\n'
    )
    assert massaged(env, "profiles", "set", "kid", "--audience", "child").returncode == 0
    done = massaged(env, "run", "--simulate", "--speed", "120", "--well")
    assert done.returncode == 0, done.stderr
    assert "\ncollar-zone-child: " in "\n" + done.stdout
    listing = json.loads(massaged(env, "history", "--json").stdout)
    assert [(s["program"], s["profile"]) for s in listing] == [("collar-zone-child", "kid")]
    # The history shows the program's minutes, not the 2-3 s it took at ×120.
    assert listing[0]["program_seconds"] > 200
    assert listing[0]["wall_seconds"] < 100


def test_the_command_line_beats_the_session_settings(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "conf" / "config.toml").write_text(
        '[session]\nprofile = "kid"\ndefault_program = "self-massage"\ndisplay = false\n'
    )
    given = argparse.Namespace(program="collar-zone", profile="ann", no_display=False)
    apply_session_defaults(given)
    assert (given.program, given.profile, given.no_display) == ("collar-zone", "ann", True)
    silent = argparse.Namespace(program=None, profile=None, no_display=False)
    apply_session_defaults(silent)
    assert (silent.program, silent.profile) == ("self-massage", "kid")


def test_the_daemon_logs_at_the_configured_level(short: Path) -> None:
    """MASSAGED_DAEMON_LOG_LEVEL: info lines at "info" (the documented default), none at
    "error"; the old code never read it and logged warnings only."""
    assert " INFO " in _daemon_log(short / "a", "info")
    assert " INFO " not in _daemon_log(short / "b", "error")


def _daemon_log(folder: Path, level: str) -> str:
    """What a daemon started with log_level = level logs until SIGTERM."""
    short = private(folder)
    socket = short / "control.sock"
    env = environment(short, MASSAGED_DAEMON_SOCKET=str(socket), MASSAGED_DAEMON_LOG_LEVEL=level)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "controller", "daemon"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: read until the banner, then to the end
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert daemon.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith(("massaged daemon:", "massaged: error")):
            line = daemon.stdout.readline()
            if not line:
                break
            lines.append(line)
        # Answering means its loop waits for SIGTERM, whose handler is then in place.
        assert quick_control.call(socket, "status")["status"] == "ok"
    finally:
        daemon.send_signal(signal.SIGTERM)
        rest, _ = daemon.communicate(timeout=WAIT)
    err = "".join(lines) + rest
    assert daemon.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_a_system_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A file the system refuses ends the command with one line naming it, not a traceback."""

    def refused() -> int:
        raise PermissionError(13, "Permission denied", "/var/lib/massaged/massaged.db")

    assert cli._guarded(refused) == 1
    assert capsys.readouterr().err == (
        "massaged: error: /var/lib/massaged/massaged.db: Permission denied\n"
    )


@pytest.mark.parametrize("argv", [[], ["programs"]], ids=["massaged", "programs"])
def test_a_missing_command_shows_the_choices_and_says_so(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The help on stdout, and the one line on stderr that says what went wrong."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "usage: massaged" in captured.out
    assert captured.err.startswith("massaged: error: give a ")
    assert captured.err.count("\n") == 1
