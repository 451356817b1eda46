"""Shared fixtures, and what lets the suite run in parallel (``./dev test`` uses pytest-xdist).

Every test gets private massaged paths (data, configuration, the simulated radio, the
daemon's socket) and the web page on a free port, in its own short folder: two tests, in
two xdist workers or one after the other, never meet through a default path or port, and
none touches the developer's own files or running daemon.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

VECTORS_PATH = Path(__file__).parent / "vectors" / "vectors.json"

KEEP_ENV = frozenset({"MASSAGED_CHROMIUM", "MASSAGED_SCREENSHOTS"})
"""MASSAGED_ variables of the test tools, not of massaged: left as the developer set them."""


@pytest.fixture(scope="session")
def vectors() -> dict[str, list[dict[str, Any]]]:
    """The vendors' normative test vectors (copied from the protocol documents)."""
    data: dict[str, list[dict[str, Any]]] = json.loads(VECTORS_PATH.read_text())
    return data


@pytest.fixture(autouse=True)
def private_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's own folder, and every default massaged path pointing into it.

    Through the XDG folders, as on a user's machine: data, configuration, and the runtime
    folder that holds the daemon's socket and the simulated radio. MASSAGED_ variables
    stay free for the tests themselves (an override must still beat the default). A short
    path under /tmp, not tmp_path: an AF_UNIX socket path is limited to 108 bytes and
    tmp_path under xdist (.../popen-gw3/test_a_long_name0/) can be longer. The developer's
    own MASSAGED_ settings ($MASSAGED_CONFIG, $MASSAGED_MQTT_HOST, ...) are removed, so a
    test sees the defaults it was written for; the web page's default port (8765, one per
    machine) becomes a free one.
    """
    folder = Path(tempfile.mkdtemp(prefix="msd-t-"))
    for name in list(os.environ):
        if name.startswith("MASSAGED_") and name not in KEEP_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("MASSAGED_WEB_PORT", "0")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder / "config"))
    (folder / "run").mkdir(mode=0o700)  # as a session's runtime folder: there, and private
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder / "run"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- running in parallel (pytest-xdist, ``--dist loadgroup``) ---------------------------------

DURATIONS_KEY = "massaged/durations"
"""Where the last runs' test durations are kept (pytest's cache, .pytest_cache/)."""
UNKNOWN_S = 1.0
"""The duration assumed for a test not timed yet (a new one): ahead of the quick ones."""


def pytest_configure(config: pytest.Config) -> None:
    """Know xdist's group mark without xdist too (``-p no:xdist``: warnings are errors here);
    in an xdist worker, end the process without tearing down the interpreter."""
    config.addinivalue_line("markers", "xdist_group(name): run these tests in one xdist worker")
    if hasattr(config, "workerinput"):
        # A worker exits when the main process tells it to, with every report sent. Freeing
        # its heap object by object (the frozen collection, every module) then takes the
        # two cores about 2 s at the end of a run, while the main process waits. Registered
        # here, this runs after every exit handler registered later (by a test or a
        # fixture, which must still run) and skips only the interpreter's own teardown and
        # the handlers of modules imported before (execnet's and logging's, which have
        # nothing to do in a worker).
        atexit.register(_end_the_worker)


def _end_the_worker() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything collection made (modules, test items) out of the garbage collector's
    way: it lives to the end, and each full collection would walk it again (in every worker)."""
    gc.collect()
    gc.freeze()


def _shared_scope(item: pytest.Item) -> str | None:
    """The module or class whose fixtures this test shares, if it uses such a fixture."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        for fixturedef in defs:
            if fixturedef.scope in ("module", "class", "package"):
                return item.nodeid.split("::")[0]
    return None


def _plain_nodeid(nodeid: str) -> str:
    """A test's id without the "@group" xdist appends under --dist loadgroup."""
    return re.sub(r"@[^@\]/]*$", "", nodeid)


def _name_group(item: pytest.Item) -> None:
    """Append "@group" to the id of a test marked xdist_group, as pytest-xdist does.

    Its loadgroup scheduler finds the group in the id, but its own renaming sets
    ``item._nodeid``, which pytest 9.2's structured ids no longer read: every group then
    silently falls apart (pytest-xdist#1386). So the id is set here, where pytest keeps it.
    """
    names = sorted(
        {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        }
    )
    current = getattr(item, "_id", None)
    if not names or current is None:  # an older pytest: xdist's own renaming works
        return
    item._id = type(current).parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: keep the tests that share a module's fixture in one worker (that fixture,
    a daemon or five benchmark processes, would otherwise be set up once per worker), and
    hand out the longest tests first, so that no long one starts last and runs alone."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    for item in items:
        scope = _shared_scope(item)
        if scope is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(scope))
        if config.getvalue("loadgroup"):
            _name_group(item)
    known: dict[str, float] = workerinput.get(DURATIONS_KEY, {})
    if known:
        # Every worker gets the same durations from the main process: the same order.
        items.sort(key=lambda item: -known.get(item.nodeid, UNKNOWN_S))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """(xdist, main process) Give each worker the durations of the last runs."""
    cache = getattr(node.config, "cache", None)  # absent with -p no:cacheprovider
    if cache is not None:
        node.workerinput[DURATIONS_KEY] = cache.get(DURATIONS_KEY, {})


_durations: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each test's setup, call and teardown (in the main process, under xdist too)."""
    nodeid = _plain_nodeid(report.nodeid)
    _durations[nodeid] = _durations.get(nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Keep this run's durations for the next one's order (main process only)."""
    config = session.config
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    if hasattr(config, "workerinput") or cache is None or not _durations:
        return
    known: dict[str, float] = cache.get(DURATIONS_KEY, {})
    known.update({nodeid: round(seconds, 3) for nodeid, seconds in _durations.items()})
    cache.set(DURATIONS_KEY, known)
