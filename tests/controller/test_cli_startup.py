"""The command line's start-up: only the command given is registered, only its layers load.

controller.cli registers the one command module that a command line names
(cli.COMMANDS), and the command modules import the heavy layers (pydantic,
asyncio, the store, the session runner, bleak, the simulator) in their
handlers, when those run. These tests hold that together: the table is what the
modules really register, a command registered alone parses and explains itself
exactly as in the full parser, the help still lists every command, and a
command that needs a layer is the only one that loads it. Checked by the
modules a child process has imported, never by timing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller import cli
from devices.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
HEAVY = (
    "asyncio",
    "bleak",
    "aiohttp",
    "aiomqtt",
    "pydantic",
    "sqlite3",
    "serial",
    "controller.session",
    "controller.store",
    "controller.daemon",
    "controller.control",
    "simulator",
    "programs",
)
"""Layers a command that fails on its options, or only prints help, must not load."""

CHECK_MODULES = """
import json, sys
from controller.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as end:  # --help, --version and argparse's errors end here
    code = end.code
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""


def imported(tmp_path: Path, *argv: str) -> tuple[int, set[str], str]:
    """Run the command line in a fresh interpreter: its exit code, modules, and stderr."""
    listing = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", CHECK_MODULES, str(listing), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, set(json.loads(listing.read_text())), done.stderr


def loaded(modules: set[str], layers: tuple[str, ...]) -> list[str]:
    """The modules of these layers (a package and everything under it) that were imported."""
    return sorted(m for m in modules if any(m == x or m.startswith(x + ".") for x in layers))


def commands_loaded(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("controller.commands.")}


# -- the table ------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(cli.COMMANDS))
def test_the_table_is_what_each_module_registers(module: str) -> None:
    parser = argparse.ArgumentParser(prog="massaged")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == cli.COMMANDS[module]


@pytest.mark.parametrize(
    ("module", "word"),
    [(m, w) for m, words in cli.COMMANDS.items() if len(words) > 1 for w in words],
)
def test_a_module_of_several_commands_registers_the_one_named(module: str, word: str) -> None:
    """build_parser(..., word): the command line's command alone, not its module's others."""
    parser = argparse.ArgumentParser(prog="massaged")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub, (word,))
    assert tuple(sub.choices) == (word,)


def test_every_command_module_is_in_the_table() -> None:
    found = {p.stem for p in (ROOT / "controller" / "commands").glob("*.py")} - {"__init__"}
    assert {m.rsplit(".", 1)[1] for m in cli.COMMANDS} == found
    words = [w for words in cli.COMMANDS.values() for w in words]
    assert len(words) == len(set(words)), "a command word registered by two modules"


def test_the_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as end:
        cli.main(["--help"])
    assert end.value.code == 0
    # One line per command, indented by four (a wrapped help line is indented further).
    listed = re.findall(r"^ {4}(\S+)", capsys.readouterr().out, re.MULTILINE)
    assert listed == [w for words in cli.COMMANDS.values() for w in words]


def test_the_full_parser_has_every_command() -> None:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [w for words in cli.COMMANDS.values() for w in words]


# -- which modules a command line registers -----------------------------------------------

ALL = tuple(cli.COMMANDS)


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (["history"], ("controller.commands.history",)),
        (["course", "show", "--help"], ("controller.commands.history",)),
        (["-v", "run", "collar-zone"], ("controller.commands.run",)),
        (["-vv", "--verbose", "devices", "list"], ("controller.commands.daemon",)),
        (["emergency-stop", "--config", "x.toml"], ("controller.commands.daemon",)),
        (["config", "--help"], ("controller.commands.config",)),
        (["--version"], ()),
        (["-v", "--version", "history"], ()),
        # The help and the errors that list every command need them all.
        ([], ALL),
        (["-v"], ALL),
        (["--help"], ALL),
        (["-h", "history"], ALL),
        (["nosuch"], ALL),
        (["histor"], ALL),
        (["--", "history"], ALL),
        (["--verb", "history"], ALL),  # an abbreviation argparse takes: not guessed here
        (["--vers"], ALL),
        (["-vh"], ALL),
        (["--bogus", "history"], ALL),
    ],
)
def test_the_modules_registered_for_a_command_line(
    argv: list[str], modules: tuple[str, ...]
) -> None:
    assert cli.command_modules(argv) == modules
    # The word registered alone is the one whose module is registered alone.
    word = cli.command_word(argv)
    assert (word is not None) == (len(modules) == 1)
    if word is not None:
        assert cli.COMMANDS[modules[0]].count(word) == 1


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = [(path, parser)]
    for action in subs:
        for name, child in action.choices.items():
            found += _leaves(child, (*path, name))
    return found


def test_a_command_registered_alone_is_the_same_command() -> None:
    """Its help, usage and defaults are those of the full parser, for every subcommand."""
    full = dict(_leaves(cli.build_parser()))
    checked = 0
    for path, parser in full.items():
        if not path:
            continue
        words = list(path)
        alone_parser = cli.build_parser(cli.command_modules(words), cli.command_word(words))
        alone = dict(_leaves(alone_parser))[path]
        assert alone.format_help() == parser.format_help(), path
        assert alone.format_usage() == parser.format_usage(), path
        assert alone._defaults.keys() == parser._defaults.keys(), path
        checked += 1
    assert checked > len(cli.COMMANDS)


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "--limit", "abc"],
        ["course", "start", "--every", "9"],
        ["daemon", "--speed", "abc"],
        ["devices", "set", "belt"],
        ["nosuch"],
        ["run", "--scale", "abc"],
    ],
)
def test_the_errors_are_those_of_the_full_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as alone:
        cli.build_parser(cli.command_modules(argv), cli.command_word(argv)).parse_args(argv)
    said = capsys.readouterr()
    with pytest.raises(SystemExit) as full:
        cli.build_parser().parse_args(argv)
    assert alone.value.code == full.value.code == 2
    assert said == capsys.readouterr()


# -- what a command line imports -----------------------------------------------------------


def test_version_imports_no_command(tmp_path: Path) -> None:
    code, modules, _ = imported(tmp_path, "--version")
    assert code == 0
    assert commands_loaded(modules) == set()
    assert loaded(modules, HEAVY) == []


def test_config_path_imports_no_heavy_layer(tmp_path: Path) -> None:
    code, modules, _ = imported(tmp_path, "config", "path")
    assert code == 0
    assert commands_loaded(modules) == {"controller.commands.config"}
    # Not even the configuration's models: the path is found by the light rules.
    assert loaded(modules, (*HEAVY, "controller.config", "devices.capabilities")) == []


def test_a_listing_commands_help_imports_no_heavy_layer(tmp_path: Path) -> None:
    code, modules, _ = imported(tmp_path, "history", "--help")
    assert code == 0
    # history takes --db and the store's opening from the profiles command.
    assert commands_loaded(modules) == {
        "controller.commands.history",
        "controller.commands.profiles",
    }
    assert loaded(modules, (*HEAVY, "controller.profiles", "controller.live")) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["daemon", "--speed", "abc"],
        ["scan", "--timeout", "abc"],
        ["course", "start", "--every", "nosuch"],
        ["sim-fault"],
    ],
)
def test_a_bad_option_fails_before_the_heavy_layers(tmp_path: Path, argv: list[str]) -> None:
    code, modules, err = imported(tmp_path, *argv)
    assert code != 0
    assert err.strip()
    assert len(commands_loaded(modules)) <= 2
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["simulate", "--radio", "@/missing/folder/radio.sock"], "does not exist"),
        (["simulate", "--record", "@/missing/x.jsonl"], "does not exist"),
        (["selftest", "nosuch"], "expected KIND=ADDRESS"),
    ],
)
def test_a_bad_input_a_handler_checks_fails_before_the_devices(
    tmp_path: Path, argv: list[str], error: str
) -> None:
    """Past argparse: these handlers check their options before they return the coroutine
    that needs asyncio, so not even asyncio is loaded."""
    argv = [word.replace("@", str(tmp_path)) for word in argv]
    code, modules, err = imported(tmp_path, *argv)
    assert code != 0
    assert error in err
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, ("devices.capabilities", "devices.drivers")) == []


LIGHT_TOO = ("controller.profiles", "controller.config", "devices.drivers", "devices.kinds")
"""Heavy enough to keep out of a command's help and its refusals too: the profile models,
the settings models, the drivers and the device kinds' table."""


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["profiles", "set", "x", "--audience", "nosuch"],
        ["programs", "--help"],
        ["completion", "bash"],
    ],
)
def test_a_help_or_a_bad_choice_imports_no_model(tmp_path: Path, argv: list[str]) -> None:
    """The choices and defaults these show live in light modules (controller.profile_terms,
    written-out constants), not with the models, the drivers or the program library."""
    code, modules, _ = imported(tmp_path, *argv)
    assert code == (2 if "nosuch" in argv or "abc" in argv else 0)
    assert loaded(modules, (*HEAVY, *LIGHT_TOO)) == []


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["profiles", "list", "--db", "@/shared"], "is a folder"),
        (["profiles", "set", "x", "--db", "@/settings.toml"], "not an SQLite file"),
        (["history", "--db", "@/settings.toml"], "not an SQLite file"),
        (["course", "show", "--db", "@/missing/typo.db"], "no database at"),
        (["devices", "list", "--config", "@/missing/x.toml"], "no such configuration file"),
        (["devices", "list", "--db", "@/missing/typo.db"], "does not exist"),
        (["stop", "--config", "@/missing/x.toml"], "no such configuration file"),
        (["config", "show", "--config", "@/shared"], "cannot read"),
        (["web", "token", "--config", "@/missing/x.toml"], "no such configuration file"),
        (["run", "nosuch", "--config", "@/missing/x.toml"], "no such configuration file"),
        (["run", "--socket", "@/LONG/control.sock"], "over the Unix limit"),
        (["attach", "--socket", "@/LONG/control.sock"], "over the Unix limit"),
        (["pair", "x"], "no terminal to ask on"),
        (["demo", "--out", "@/settings.toml"], "is a file"),
        (["programs", "plot-recording", "x.jsonl", "--out", "@/shared"], "is a folder"),
    ],
)
def test_a_wrong_path_is_refused_before_the_layers_that_would_open_it(
    tmp_path: Path, argv: list[str], error: str
) -> None:
    """A --db, --config or --socket that cannot do is refused by the light checks
    (controller.store_paths, quick_control.check_config_file, paths.check_socket_path)
    in the words of the store, the configuration and the control socket, before any of
    them, or asyncio, loads."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "settings.toml").write_text("[daemon]\n")
    long = "x" * 120
    argv = [word.replace("@", str(tmp_path)).replace("LONG", long) for word in argv]
    code, modules, err = imported(tmp_path, *argv)
    assert code == 1
    assert error in err, err
    assert err.startswith("massaged: error: "), err
    assert loaded(modules, (*HEAVY, *LIGHT_TOO)) == []


def test_the_constants_written_out_for_the_help_are_the_real_ones() -> None:
    from controller.commands import programs as programs_command
    from controller.commands import run as run_command
    from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT
    from programs.library import USER_DIR_ENV

    assert run_command.CONNECT_TIMEOUT_S == DEFAULT_CONNECT_TIMEOUT
    assert programs_command.PROGRAMS_DIR_ENV == USER_DIR_ENV


def test_the_light_modules_names_are_the_heavy_modules_own() -> None:
    """Re-exported, not copied: one definition each."""
    from controller import profile_terms, profiles, store, store_paths

    for name in ("DEFAULT_PROFILE_NAME", "Audience", "PainfulSide", "Contraindication"):
        assert getattr(profiles, name) is getattr(profile_terms, name), name
    for name in ("SQLITE_MAGIC", "check_database_file", "database_path"):
        assert getattr(store, name) is getattr(store_paths, name), name
    from controller import control, paths

    assert control.check_socket_path is paths.check_socket_path
    assert control.UNIX_PATH_MAX is paths.UNIX_PATH_MAX


# -- no daemon, nothing to read: what a command line does without ---------------------------


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and the XDG folders in tmp_path (no configuration, database or daemon there),
    and no MASSAGED_* variable: the children imported() starts inherit them."""
    home = tmp_path / "home"
    (tmp_path / "run").mkdir()
    home.mkdir()
    for name in [v for v in os.environ if v.startswith("MASSAGED_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return home


CLIENT = ("asyncio", "controller.control", "controller.remote")
"""The control socket's asyncio client: not loaded to find that no daemon is there."""
SETTINGS = ("pydantic", "controller.config", "controller.api")
"""The settings' models (and the API's): not loaded when no file or variable sets anything."""
CLAIM = ("controller.locks", "secrets")
"""A store's claim on the sessions it records: a store that only reads does without."""


@pytest.mark.parametrize(
    ("argv", "code", "without"),
    [
        # An empty history is read without the profile models and the session's outcomes.
        (["history"], 0, ("pydantic", "controller.profiles", "controller.session", *CLAIM)),
        # The built-in default profile exists without its models being made.
        (["course", "start"], 0, ("pydantic", "controller.profiles")),
        (["course", "show"], 0, ("pydantic", "controller.profiles")),
        (["profiles", "show", "nosuch"], 1, ("pydantic", "controller.profiles")),
        (["profiles", "check", "nosuch"], 1, ("pydantic", "controller.profiles")),
        # No control socket: the session would run here, so the unknown program is named
        # without the client, and before the store is opened.
        # No file and no variable: the defaults are known without the settings' models
        # (controller.default_settings), so these need no pydantic at all.
        (["run", "nosuch"], 1, (*CLIENT, *SETTINGS, "controller.store", "controller.session")),
        (["attach"], 1, (*CLIENT, *SETTINGS)),
        (
            ["devices", "list"],
            0,
            (*CLIENT, *SETTINGS, *CLAIM, "devices.kinds", "controller.pairing"),
        ),
        (["web", "token"], 0, SETTINGS),
        (["devices", "unpair", "nosuch"], 1, (*CLIENT, "devices.kinds", "controller.pairing")),
        # Saved, and no daemon to tell (the profile's description loads asyncio itself).
        (["profiles", "set", "someone"], 0, ("controller.control", "controller.config")),
    ],
)
def test_no_daemon_and_nothing_stored_need_no_client(
    tmp_path: Path, private_home: Path, argv: list[str], code: int, without: tuple[str, ...]
) -> None:
    """Checked by os.stat that nothing is at the control socket (paths.no_socket_at): the
    answer the client would give, without asyncio and the client loaded for it."""
    got, modules, err = imported(tmp_path, *argv)
    assert got == code, err
    assert loaded(modules, without) == []


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["devices", "list", "--db", "@/shared"], "is a folder"),
        (["devices", "set", "x", "--max-intensity", "0.5", "--db", "@/settings.toml"], "not an"),
        (["unpair", "x", "--db", "@/settings.toml"], "not an SQLite file"),
        (["devices", "rename", "x", "y", "--db", "@/shared"], "is a folder"),
    ],
)
def test_no_daemon_and_a_wrong_db_is_refused_before_the_settings(
    tmp_path: Path, private_home: Path, argv: list[str], error: str
) -> None:
    """No daemon at the socket (by the light rules): the devices are read from the store,
    so a --db it would refuse is refused first, as a --db in a missing folder is."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "settings.toml").write_text("[daemon]\n")
    argv = [word.replace("@", str(tmp_path)) for word in argv]
    code, modules, err = imported(tmp_path, *argv)
    assert code == 1
    assert error in err, err
    assert err.startswith("massaged: error: "), err
    assert loaded(modules, (*HEAVY, *LIGHT_TOO)) == []


def test_the_light_defaults_are_the_configurations(
    private_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file and no MASSAGED_<SECTION>_<KEY>: controller.default_settings gives what
    load_config would; anything that could change a setting sends the caller to it."""
    from controller import config, default_settings

    light = default_settings.surely_defaults(None)
    assert light is not None
    assert repr(light) == repr(default_settings.settings_of(config.load_config()))
    session = config.SessionSettings.model_fields
    assert session["default_program"].default == default_settings.DEFAULT_PROGRAM
    assert session["display"].default is default_settings.DEFAULT_DISPLAY

    for section in config.sections():
        monkeypatch.setenv(config.env_var(section, "nosuch"), "1")
        assert default_settings.surely_defaults(None) is None, section
        monkeypatch.delenv(config.env_var(section, "nosuch"))
    file = config.config_path().path
    file.parent.mkdir(parents=True)
    file.write_text("")
    assert default_settings.surely_defaults(None) is None
    missing = private_home / "missing.toml"
    with pytest.raises(ConfigError) as light_error:
        default_settings.surely_defaults(missing)
    with pytest.raises(ConfigError) as full_error:
        config.load_config(missing)
    assert str(light_error.value) == str(full_error.value)


def test_the_live_view_needs_no_session_runner() -> None:
    """run, attach and demo show a daemon's session: the runner is not in their process."""
    probe = (
        "import sys, controller.live; "
        "print('controller.session.runner' in sys.modules, 'controller.safety' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"], out
