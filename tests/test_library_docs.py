"""docs/library.md works as written: every Python example runs, and the public surface holds.

Each example runs as a script in its own process, in a private folder, with
every path massaged uses (the simulated radio, the data, the configuration,
the control socket) inside it, so the examples run in parallel (pytest-xdist)
and never touch a user's daemon or history.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "library.md"
PACKAGES = ("devices", "programs", "controller", "simulator")
EXAMPLE_TIMEOUT = 120.0
"""Seconds for one example, Python start-ups and a simulated session included."""
HEAVY_MODULES = ("pydantic", "bleak", "serial", "aiomqtt", "matplotlib", "numpy")


@dataclass(frozen=True)
class Block:
    """One fenced block of the document: its language, its first line number, its text."""

    lang: str
    line: int
    heading: str
    code: str


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the heading it is under."""
    found: list[Block] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence:
            start = i + 1
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                i += 1
            found.append(Block(fence.group(1), start + 1, heading, "\n".join(lines[start:i])))
        i += 1
    return found


PYTHON_BLOCKS = [b for b in blocks(DOC.read_text(encoding="utf-8")) if b.lang == "python"]


def _slug(block: Block) -> str:
    return re.sub(r"[^a-z0-9]+", "-", block.heading.lower()).strip("-") + f"-line{block.line}"


@pytest.fixture
def private_folder() -> Iterator[Path]:
    """A short private folder (Unix socket paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="libdoc-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def private_env(folder: Path) -> dict[str, str]:
    """This environment with every massaged path inside folder, and the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSAGED_")}
    env.update(
        MASSAGED_SIM_RADIO=str(folder / "radio.sock"),
        MASSAGED_DATA_DIR=str(folder / "data"),
        MASSAGED_CONFIG_DIR=str(folder / "config"),
        MASSAGED_DAEMON_SOCKET=str(folder / "control.sock"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def test_the_document_has_examples() -> None:
    headings = {b.heading for b in PYTHON_BLOCKS}
    for task in (
        "Start the simulator in this process",
        "Scan the simulated radio",
        "Connect to a simulated belt, set an output, stop",
        "Run a built-in program on simulated devices",
        "Start the simulator as a subprocess",
        "Read a recording",
    ):
        assert task in headings


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=_slug)
def test_example_runs(block: Block, private_folder: Path) -> None:
    script = private_folder / "example.py"
    script.write_text(block.code + "\n", encoding="utf-8")
    try:
        done = subprocess.run(
            # -W error: a warning (a coroutine never awaited) fails the example, as in the
            # suite; only the example's own interpreter, not the processes it starts.
            [sys.executable, "-W", "error", str(script)],
            cwd=private_folder,
            env=private_env(private_folder),
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"docs/library.md line {block.line}: still running after {err.timeout} s")
    assert done.returncode == 0, (
        f"docs/library.md line {block.line} ({block.heading}) failed "
        f"with exit status {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    assert done.stdout.strip(), "an example shows what it did"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=_slug)
def test_examples_import_only_the_public_surface(block: Block) -> None:
    """An example that reaches into a module would teach a path a refactor may move."""
    for node in ast.walk(ast.parse(block.code)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                assert name == top, f"line {block.line}: import {name}: import from {top}"
            else:
                assert top in sys.stdlib_module_names, f"line {block.line}: imports {name}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in PACKAGES
        ):
            package = importlib.import_module(node.value.id)
            assert node.attr in package.__all__, (
                f"line {block.line}: {node.value.id}.{node.attr} is not public"
            )


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_imports(name: str) -> None:
    package = importlib.import_module(name)
    public = package.__all__
    assert len(set(public)) == len(public)
    for attr in public:
        assert getattr(package, attr) is not None, f"{name}.{attr}"
        assert attr in dir(package)
    with pytest.raises(AttributeError, match="no attribute"):
        _ = package.no_such_name


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_documented(name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    table = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
    missing = [
        attr
        for attr in importlib.import_module(name).__all__
        if not re.search(rf"`{attr}`|^\W*{attr}\s+{name}\b", text, re.MULTILINE)
    ]
    assert not missing, f"{name}: not in docs/library.md: {missing}"
    assert table


def test_importing_the_packages_loads_nothing_heavy() -> None:
    """import devices (and the rest) is free: the emergency stop's quick path imports them."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, devices, programs, controller, simulator; "
            "print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert [m for m in modules if m.split(".")[0] in HEAVY_MODULES] == []
    ours = {m for m in modules if m.split(".")[0] in PACKAGES}
    assert ours == {*PACKAGES, "devices._lazy", "devices.errors"}


def _tree() -> list[tuple[int, str, str]]:
    """(depth, name, package) for each line of the exception tree in docs/library.md."""
    text = DOC.read_text(encoding="utf-8")
    block = next(b for b in blocks(text) if b.lang == "text" and b.heading == "Errors")
    rows = []
    for line in block.code.splitlines():
        match = re.search(r"(\w+)\s+(\w+)", line)
        assert match, line
        rows.append((match.start(1), match.group(1), match.group(2)))
    return rows


def test_the_exception_tree_is_true() -> None:
    from devices import MassagedError

    parents: list[tuple[int, type[BaseException]]] = []
    listed = set()
    for column, name, where in _tree():
        cls = getattr(importlib.import_module(where), name)
        assert name in importlib.import_module(where).__all__, f"{where}.{name}"
        while parents and parents[-1][0] >= column:
            parents.pop()
        if parents:
            assert issubclass(cls, parents[-1][1]), f"{name} is not a {parents[-1][1].__name__}"
        else:
            assert cls is MassagedError
        parents.append((column, cls))
        listed.add(cls)
    # Every public exception is in the tree.
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for attr in package.__all__:
            value = getattr(package, attr)
            if isinstance(value, type) and issubclass(value, MassagedError):
                assert value in listed, f"{package_name}.{attr} is missing from the tree"
