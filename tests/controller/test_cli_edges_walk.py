"""Every subcommand, with no terminal and with bad inputs, ends cleanly (issue 13).

The walk reads the command tree from controller/cli.py's parser, so a command
added later is walked too. Each command runs as a user's script would: its
own process, stdin from /dev/null, every path (HOME, XDG_*, MASSAGED_*)
pointing into a private temporary tree, and the working folder in it too.
For each run it asserts:

- no "Traceback" on stdout or stderr, and an end within a time-out;
- on failure, a non-zero status and a line or two on stderr (argparse's usage
  block aside);
- nothing outside the command's own outputs created or changed: the tree is
  snapshotted (paths, modes, sizes, times) before and after. A command that
  failed leaves no trace outside massaged's data folder; a read command (a
  listing, history, status, ...) none at all; the bad inputs themselves (a
  folder given as --db, a TOML file, a missing folder) are never touched.

The commands that serve until stopped (simulate, daemon, demo) get only the bad
inputs, which must fail before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.cli import build_parser
from controller.store import Store

TIMEOUT_S = 60.0
"""Generous: a busy shared machine; a command waiting for input would wait forever."""
SERVES = {"simulate", "daemon", "demo"}
"""Commands that run until stopped when their input is good."""
READ_ONLY = {
    ("programs", "list"),
    ("programs", "show"),
    ("programs", "validate"),
    ("programs", "schema"),
    ("profiles", "list"),
    ("profiles", "show"),
    ("profiles", "check"),
    ("history",),
    ("course", "show"),
    ("config", "show"),
    ("config", "path"),
    ("config", "check"),
    ("status",),
    ("devices", "list"),
    ("completion",),
    ("attach",),
    ("stop",),
    ("emergency-stop",),
    ("pause",),
    ("resume",),
    ("gentler",),
}
"""Commands that only read: they create and change nothing, whether they fail or not."""


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the parser, as its words and its own parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) not in seen:  # an alias is the same parser
                seen.add(id(sub))
                yield from leaves(sub, (*path, name))


COMMANDS = dict(leaves(build_parser()))
ROOT = "@ROOT@"
"""Stands for the tree's folder in a planned command line (each run has its own tree)."""


@dataclass(frozen=True)
class Tree:
    """One private tree: home, XDG folders, massaged's own, the working folder, bad inputs."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def data(self) -> Path:
        return self.home / ".local" / "share" / "massaged"

    @property
    def config(self) -> Path:
        return self.home / ".config" / "massaged"

    @property
    def shared(self) -> Path:
        """An existing folder of the user's, open to others (0755): never to be changed."""
        return self.root / "shared"

    @property
    def toml(self) -> Path:
        """A file of the user's that is not a database (0644)."""
        return self.root / "settings.toml"

    def make(self) -> None:
        for folder in (self.home, self.work, self.shared, self.root / "run"):
            folder.mkdir(parents=True)
        self.shared.chmod(0o755)
        (self.shared / "notes.txt").write_text("mine\n")
        self.toml.write_text("[daemon]\nlog_level = 'info'\n")
        self.toml.chmod(0o644)

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            XDG_RUNTIME_DIR=str(self.root / "run"),
            MASSAGED_SIM_RADIO=str(self.root / "run" / "radio.sock"),
            MPLCONFIGDIR=str(self.root / "mpl"),  # matplotlib's cache: not the command's
            TERM="dumb",
        )
        return env

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Every path under the tree: its mode, size and modification time."""
        found: dict[str, tuple[int, int, int]] = {}
        for folder, dirs, files in os.walk(self.root):
            for name in [*dirs, *files]:
                path = Path(folder) / name
                if path.is_relative_to(self.root / "mpl"):
                    continue
                info = path.lstat()
                size = 0 if stat.S_ISDIR(info.st_mode) else info.st_size
                found[str(path.relative_to(self.root))] = (info.st_mode, size, info.st_mtime_ns)
        return found


def bad_values(words: tuple[str, ...], tree: Tree, dest: str, action: argparse.Action) -> list[str]:
    """Bad values for one option, by what it names."""
    missing = tree.root / "missing" / "folder"
    if dest == "db":
        return [str(tree.shared), str(tree.toml), str(missing / "typo.db")]
    if dest == "out" and words == ("demo",):
        # The demo's --out is a folder it fills (an existing one is good input).
        return [str(missing / "demo-output"), str(tree.toml)]
    if dest in ("out", "record"):
        return [str(missing / "x.png"), str(tree.shared)]
    if dest == "socket":
        return [str(tree.root / ("x" * 120) / "control.sock")]
    if dest == "config":
        return [str(missing / "massaged.toml"), str(tree.shared)]
    if dest == "radio":
        # The daemon waits for a simulator's radio to appear (one may start later): by design.
        return [] if words == ("daemon",) else [str(missing / "radio.sock")]
    if action.choices:
        return ["nosuch"]
    if dest in ("speed", "timeout", "limit", "sessions", "scale", "width", "max_intensity"):
        return ["0", "abc"]
    if action.type is not None and action.type is not Path:
        return ["abc"]
    return []


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    """A word for each positional argument (a valid choice where there are choices)."""
    words: list[str] = []
    for action in parser._actions:
        if action.option_strings or action.nargs == 0:
            continue
        if action.choices:
            words.append(sorted(action.choices)[0])
        else:
            words.append("nosuch")
    return words


def invocations(words: tuple[str, ...], tree: Tree) -> list[list[str]]:
    """The runs of one command: bare, with its positionals, and each bad option value."""
    parser = COMMANDS[words]
    filled = [*words, *positionals(parser)]
    runs: list[list[str]] = []
    if words[0] not in SERVES:
        # Bare and filled are one run for a command without positionals: the same argv in
        # a fresh tree is the same test, and a process start is what the walk costs.
        runs += [list(words)] if filled == list(words) else [list(words), filled]
    for action in parser._actions:
        if (
            not action.option_strings
            or action.nargs == 0
            or isinstance(action, argparse._HelpAction)
        ):
            continue
        option = action.option_strings[-1]
        runs += [[*filled, option, value] for value in bad_values(words, tree, action.dest, action)]
    return runs


@dataclass(frozen=True)
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    changed: list[str]


def run_once(argv: list[str], root: Path) -> Outcome:
    """One run in a fresh tree; what it printed and what it changed there."""
    tree = Tree(root)
    tree.make()
    argv = [word.replace(ROOT, str(root)) for word in argv]
    before = tree.snapshot()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "controller", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tree.work,
            env=tree.env(),
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"massaged {' '.join(argv)} did not end in {TIMEOUT_S:g} s") from err
    after = tree.snapshot()
    changed = sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )
    return Outcome(argv, done.returncode, done.stdout, done.stderr, changed)


def message_lines(err: str) -> list[str]:
    """stderr without argparse's usage block (its first line and the indented rest)."""
    lines: list[str] = []
    in_usage = False
    for line in err.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


def allowed_change(words: tuple[str, ...], outcome: Outcome, tree: Tree) -> Callable[[str], bool]:
    """Which changed paths are the command's own outputs."""
    own = [
        str(p.relative_to(tree.root))
        for p in (tree.data, tree.data.parent, tree.home / ".local", tree.root / "run")
    ]
    if words in READ_ONLY:
        return lambda path: False
    # Making massaged's data folder under HOME touches HOME's own time, nothing in it.
    own_exact = {str(tree.home.relative_to(tree.root))}
    if outcome.code == 0 and words != ("config", "show"):
        # A write command that did its job: massaged's own data and configuration.
        own += [str(p.relative_to(tree.root)) for p in (tree.config, tree.config.parent)]
    return lambda path: path in own_exact or any(path == o or path.startswith(o + "/") for o in own)


def check(words: tuple[str, ...], outcome: Outcome, tree: Tree) -> list[str]:
    """What is wrong with one run (empty: nothing)."""
    problems: list[str] = []
    shown = f"massaged {' '.join(outcome.argv)} (exit {outcome.code})"
    if "Traceback" in outcome.out + outcome.err:
        problems.append(f"{shown}: a traceback:\n{outcome.err[-2000:]}")
    lines = message_lines(outcome.err)
    if outcome.code != 0:
        if not lines:
            problems.append(f"{shown}: failed without a word on stderr")
        elif len(lines) > 2:
            problems.append(f"{shown}: not one clear line on stderr:\n{outcome.err}")
    own = allowed_change(words, outcome, tree)
    stray = [path for path in outcome.changed if not own(path)]
    if stray:
        problems.append(f"{shown}: created or changed {stray}")
    return problems


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_command_ends_cleanly_without_a_terminal(
    words: tuple[str, ...], tmp_path: Path
) -> None:
    runs = invocations(words, Tree(Path(ROOT)))
    assert runs, f"no runs for {words}"
    # Two at a time, each in its own tree: the machine is shared.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(lambda ia: run_once(ia[1], tmp_path / f"t{ia[0]}"), enumerate(runs))
        )
    problems = [
        problem
        for i, outcome in enumerate(outcomes)
        for problem in check(words, outcome, Tree(tmp_path / f"t{i}"))
    ]
    assert not problems, "\n\n".join(problems)


def test_the_walk_covers_the_new_and_the_serving_commands() -> None:
    # The tree is read from the parser: attach (new) is walked; the serving commands
    # are walked with bad inputs only.
    assert ("attach",) in COMMANDS
    assert {w[0] for w in COMMANDS} >= SERVES
    assert all(invocations(w, Tree(Path("/x"))) for w in COMMANDS if w[0] in SERVES)


# -- files and paths, one by one ------------------------------------------------------


def massaged(tree: Tree, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tree.work,
        env=tree.env(),
        timeout=TIMEOUT_S,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    made = Tree(tmp_path)
    made.make()
    return made


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_history_never_changes_a_folder_or_file_it_was_wrongly_given(tree: Tree) -> None:
    before = tree.snapshot()
    line = one_line(massaged(tree, "history", "--db", str(tree.shared)))
    assert "is a folder" in line
    line = one_line(massaged(tree, "history", "--db", str(tree.toml)))
    assert "not a massaged database" in line
    # Before the fix both were made private (0700, 0600) before failing.
    assert tree.shared.stat().st_mode & 0o777 == 0o755
    assert tree.toml.stat().st_mode & 0o777 == 0o644
    assert tree.snapshot() == before


def test_a_read_command_on_a_missing_database_says_so_and_creates_nothing(tree: Tree) -> None:
    before = tree.snapshot()
    typo = tree.root / "typo" / "path.db"
    for argv in (["history"], ["course", "show"], ["profiles", "list"], ["devices", "list"]):
        line = one_line(massaged(tree, *argv, "--db", str(typo)))
        assert str(tree.root / "typo") in line, line
    assert tree.snapshot() == before


def sessions_db(path: Path, programs: tuple[str, ...]) -> Store:
    from controller.session import Outcome as Ended

    store = Store.open(path)
    for program in programs:
        sid = store.begin_session(program, ["belt"], "default")
        store.finish_session(sid, Ended.COMPLETED)
    return store


def test_a_read_only_database_is_read_and_left_as_it_was(tree: Tree) -> None:
    db = tree.root / "old.db"
    sessions_db(db, ("neck-basic", "shoulders")).close()
    db.chmod(0o444)
    before = tree.snapshot()
    done = massaged(tree, "history", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "shoulders" in done.stdout
    assert "neck-basic" in done.stdout
    assert "Traceback" not in done.stderr
    assert tree.snapshot() == before  # no -wal, no -shm, no mode or time changed


def test_history_reads_what_a_running_writer_holds_in_its_wal(tree: Tree) -> None:
    db = tree.root / "busy.db"
    writer = sessions_db(db, ("neck-basic",))
    try:
        assert db.with_name("busy.db-wal").exists()  # the row is in the WAL, not yet the file
        done = massaged(tree, "history", "--db", str(db), "--json")
        assert done.returncode == 0, done.stderr
        assert [row["program"] for row in json.loads(done.stdout)] == ["neck-basic"]
    finally:
        writer.close()


def test_an_sqlite_file_of_another_program_is_not_changed(tree: Tree) -> None:
    other = tree.root / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = tree.snapshot()
    for argv in (["history"], ["course", "start"]):
        line = one_line(massaged(tree, *argv, "--db", str(other)))
        assert "not a massaged one" in line
    assert tree.snapshot() == before


@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_run_record_names_a_file_in_an_existing_folder(tree: Tree, where: str) -> None:
    record = tree.root / "missing" / "x.jsonl" if where == "missing folder" else tree.shared
    before = tree.snapshot()
    line = one_line(
        massaged(tree, "run", "--simulate", "--record", str(record), "--well", "--speed", "120")
    )
    assert line.startswith(f"massaged: error: --record {record}:"), line
    assert tree.snapshot() == before


def test_a_socket_path_over_the_unix_limit_is_one_line_before_anything_starts(
    tree: Tree,
) -> None:
    long = tree.root / ("x" * 120) / "control.sock"
    before = tree.snapshot()
    for argv in (["daemon"], ["run", "--well"], ["attach"], ["devices", "list"]):
        line = one_line(massaged(tree, *argv, "--socket", str(long)))
        assert "over the Unix limit" in line or "too long" in line, line
    assert tree.snapshot() == before


def test_run_detach_without_a_daemon_refuses_instead_of_running_here(tree: Tree) -> None:
    # Before: --detach did not exist; a detached run must never fall back to a session
    # in this process, which would end with the terminal after all.
    before = tree.snapshot()
    line = one_line(massaged(tree, "run", "collar-zone", "--detach", "--well"))
    assert line.startswith("massaged: error: --detach leaves the session to the daemon"), line
    line = one_line(massaged(tree, "run", "--simulate", "--detach", "--well"))
    assert "--detach" in line
    assert tree.snapshot() == before
