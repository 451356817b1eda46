"""Issue 13, wrong or late errors: each bad input ends in one clear line, early, touching nothing.

Every test runs the real ``massaged`` command in a subprocess, as a script
would (stdin from /dev/null), and checks the exit status, that stderr holds
one sentence and no traceback, and where it matters that no file outside the
command's own outputs was created or changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""Seconds a command line process may take on a busy machine."""
SCRIPT = Path(sys.executable).with_name("massaged")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "controller"]
"""The installed console script: what a user runs."""
PILLOW = "5A:1D:02:00:00:01"
"""The address 'massaged simulate' gives its first pillow."""


def environment(folder: Path, **extra: str) -> dict[str, str]:
    """A process's environment: its own folders and sockets, none of the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSAGED_", "XDG_"))}
    for name in ("conf", "data", "home"):
        (folder / name).mkdir(mode=0o700, exist_ok=True)
    env["HOME"] = str(folder / "home")
    env["MASSAGED_CONFIG_DIR"] = str(folder / "conf")
    env["MASSAGED_DATA_DIR"] = str(folder / "data")
    env["MASSAGED_DAEMON_SOCKET"] = str(folder / "control.sock")
    env["MASSAGED_SIM_RADIO"] = str(folder / "radio.sock")
    env.update(extra)
    return env


def massaged(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The command line with no terminal on stdin."""
    return subprocess.run(
        [*COMMAND, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=WAIT,
    )


def one_clear_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a failure told in one stderr line with no traceback; return that line."""
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything, everything
    assert result.returncode != 0, everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage: "):
        # argparse's refusal: its usage (wrapped lines indented), then the one error line.
        lines = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[object, ...]]:
    """Every path under folder with its type, size, modification time and link target."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        target = os.readlink(path) if path.is_symlink() else None
        out[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return out


@contextlib.contextmanager
def short_folder() -> Iterator[Path]:
    """A folder with a short path: Unix socket paths are limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="msd-e-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def short() -> Iterator[Path]:
    """This test's own short folder."""
    with short_folder() as folder:
        yield folder


@dataclass
class Simulator:
    """A running 'massaged simulate' and the environment that reaches it."""

    folder: Path
    env: dict[str, str]
    process: subprocess.Popen[str]
    devices: list[dict[str, object]]


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """'massaged simulate' with its default belt, pillow and butterfly, recording.

    One for the module: each test using it only asks it questions (a fault's value, a
    device's services, a second simulator beside it) and compares what it sees before
    and after within the test, so a fresh one per test only cost a process start each.
    """
    with short_folder() as short:
        yield from _simulator(short)


def _simulator(short: Path) -> Iterator[Simulator]:
    env = environment(short)
    with subprocess.Popen(
        [*COMMAND, "simulate", "--record", str(short / "recording.jsonl")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            devices = [json.loads(process.stdout.readline()) for _ in range(3)]
            assert "# radio" in process.stderr.readline()  # listening from here
            yield Simulator(short, env, process, devices)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the simulator ------------------------------------------------------------------


def test_a_second_simulator_refuses_and_leaves_the_first_ones_files(simulator: Simulator) -> None:
    link = simulator.folder / "belt-1"
    recording = simulator.folder / "recording.jsonl"
    target = os.readlink(link)
    first_line = recording.read_text().splitlines()[0]
    others = {k: v for k, v in snapshot(simulator.folder).items() if k != recording.name}

    result = massaged(simulator.env, "simulate", "--record", str(recording))

    line = one_clear_failure(result)
    assert "another simulated radio already listens" in line
    # The running simulator's serial link is still there and still its own pty,
    assert os.readlink(link) == target
    # its recording was not truncated, and nothing else was created or changed.
    assert recording.read_text().splitlines()[0] == first_line
    assert {k: v for k, v in snapshot(simulator.folder).items() if k != recording.name} == others
    assert simulator.process.poll() is None


@pytest.mark.parametrize(
    ("option", "where", "expected"),
    [
        ("--radio", "missing/deeper/radio.sock", "folder {short}/missing does not exist"),
        ("--record", "missing/recording.jsonl", "folder {short}/missing does not exist"),
        ("--record", ".", "is a folder; give a file name"),
    ],
)
def test_simulate_refuses_a_path_it_cannot_use_and_creates_nothing(
    short: Path, option: str, where: str, expected: str
) -> None:
    env = environment(short)
    before = snapshot(short)
    result = massaged(env, "simulate", option, str(short / where))
    assert expected.format(short=short) in one_clear_failure(result)
    assert snapshot(short) == before


def test_sim_fault_checks_the_value_of_each_fault(simulator: Simulator) -> None:
    for args, expected in [
        (("pillow-1", "set_occupied", "maybe"), "set_occupied takes true or false, not 'maybe'"),
        (("belt-1", "link_down", "3"), "link_down takes no value"),
        (("belt-1", "delay", "NaN"), "delay takes seconds from 0 to 60"),
        (("butterfly-1", "turn_wheel", "7"), "turn_wheel takes [A, B]"),
    ]:
        line = one_clear_failure(massaged(simulator.env, "sim-fault", *args))
        assert expected in line, args
    ok = massaged(simulator.env, "sim-fault", "pillow-1", "set_occupied", "true")
    assert ok.returncode == 0, ok.stderr


def test_sim_fault_errors_say_their_code_at_most_once(simulator: Simulator) -> None:
    line = one_clear_failure(massaged(simulator.env, "sim-fault", "nobody", "link_down"))
    assert line == "massaged: error: no simulated device 'nobody'"
    line = one_clear_failure(massaged(simulator.env, "sim-fault", "belt-1", "explode"))
    assert line.startswith("massaged: error: unknown fault 'explode'; valid: link_down")


def test_sim_fault_without_a_simulator_says_so(short: Path) -> None:
    line = one_clear_failure(massaged(environment(short), "sim-fault", "belt-1", "link_down"))
    assert "is 'massaged simulate' running?" in line


def test_selftest_of_a_belt_at_a_pillows_address_says_it_is_a_pillow(
    simulator: Simulator,
) -> None:
    result = massaged(
        simulator.env, "selftest", "--simulator", "pillow=/dev/null", f"belt={PILLOW}"
    )
    # Every target is reported, even after one that cannot be set up at all.
    assert one_clear_failure(result) == "massaged: error: 2 of 2 self-tests failed"
    assert "pillow at /dev/null: FAILED" in result.stdout
    assert f"{PILLOW} is not a belt: it offers a pillow's services" in result.stdout
    assert "Characteristic" not in result.stdout + result.stderr


# -- scan -----------------------------------------------------------------------------


def test_scan_without_bluetooth_says_so_and_fails(short: Path) -> None:
    # No system D-Bus, so no BlueZ: what a machine without Bluetooth looks like to bleak.
    env = environment(short, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={short / 'no-dbus'}")
    line = one_clear_failure(massaged(env, "scan", "--timeout", "0.5"))
    assert line.startswith("massaged: error: Bluetooth is unavailable")


def test_scan_of_a_simulator_that_is_not_running_says_so(short: Path) -> None:
    line = one_clear_failure(
        massaged(environment(short), "scan", "--simulator", "--timeout", "0.5")
    )
    assert line == (
        f"massaged: error: no simulated radio at {short / 'radio.sock'}: "
        "is 'massaged simulate' running?"
    )


# -- demo: everything checked before the setup ------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--speed", "0"), "--speed must be 1..60, not 0"),
        (("--speed", "1000"), "--speed must be 1..60, not 1000"),
        (("--speed", "nan"), "'nan' is not a finite number"),
        (("--program", "nosuch"), "no program 'nosuch' among the built-ins"),
    ],
)
def test_demo_refuses_bad_input_before_starting_anything(
    short: Path, args: tuple[str, ...], expected: str
) -> None:
    out = short / "demo-output"
    result = massaged(environment(short), "demo", "--out", str(out), *args)
    assert expected in one_clear_failure(result)
    assert "starting the simulator" not in result.stdout
    assert not out.exists()


# -- argument types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("history", "--limit", "abc"), "argument --limit: 'abc' is not a whole number"),
        (("scan", "--timeout", "soon"), "argument --timeout: 'soon' is not a number"),
        (("selftest", "--timeout", "-1", "belt=/dev/null"), "give a number of seconds above 0"),
        (("simulate", "--speed", "inf"), "argument --speed: 'inf' is not a finite number"),
    ],
)
def test_argument_errors_name_what_is_wanted(
    short: Path, args: tuple[str, ...], expected: str
) -> None:
    env = environment(short)
    before = snapshot(short)
    result = massaged(env, *args)
    line = one_clear_failure(result)
    assert result.returncode == 2
    assert expected in line
    assert "invalid" not in line  # argparse's "invalid _positive value"
    assert snapshot(short) == before


# -- programs -------------------------------------------------------------------------


PROGRAM = """\
id = "odd"
title = "Odd"
audience = "adult"
max_duration = 10
description = "x"
cites = "y"

[[steps]]
technique = "stroking"
duration_s = {duration}
intensity = {intensity}
"""


@pytest.mark.parametrize(
    ("duration", "intensity", "expected"),
    [
        ("60", "true", "intensity: true is not a number"),
        ("1e-300", "0.5", "duration_s: 1e-300 is less than 1 (seconds)"),
        ("60", '"0.5"', "intensity: '0.5' is not a number"),
    ],
)
def test_programs_validate_wants_real_numbers_and_a_real_duration(
    short: Path, duration: str, intensity: str, expected: str
) -> None:
    path = short / "odd.toml"
    path.write_text(PROGRAM.format(duration=duration, intensity=intensity))
    line = one_clear_failure(massaged(environment(short), "programs", "validate", str(path)))
    assert line.startswith(f"{path}: step 1 (stroking): {expected}")


def test_plot_recording_of_a_file_that_is_not_a_recording(short: Path) -> None:
    path = short / "odd.toml"
    path.write_text(PROGRAM.format(duration="60", intensity="0.5"))
    png = short / "plot.png"
    line = one_clear_failure(
        massaged(environment(short), "programs", "plot-recording", str(path), "--out", str(png))
    )
    assert line == f"massaged: error: {path}: not a simulator recording (line 1: not JSON)"
    assert not png.exists()


def test_plot_recording_into_a_folder_names_the_folder(short: Path) -> None:
    recording = short / "r.jsonl"
    row = {"t": 0.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0}
    recording.write_text(json.dumps(row) + "\n")
    line = one_clear_failure(
        massaged(environment(short), "programs", "plot-recording", str(recording), "--out", "/")
    )
    assert line.startswith("massaged: error: --out /: is a folder")
