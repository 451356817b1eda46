"""Shared fixtures, and what lets the suite run in parallel (``./dev test`` uses pytest-xdist).

Every test gets private massaged paths (data, configuration, the simulated radio, the
daemon's socket, the runtime folder) and the web page on a free port, in its own short
folder: two tests, in two xdist workers or one after the other, never meet through a
default path or port, and none touches the developer's own files or running daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

VECTORS_PATH = Path(__file__).parent / "vectors" / "vectors.json"

KEEP_ENV = frozenset({"MASSAGED_CHROMIUM"})
"""MASSAGED_ variables of the test tools, not of massaged: left as the developer set them."""


@pytest.fixture(scope="session")
def vectors() -> dict[str, list[dict[str, Any]]]:
    """The vendors' normative test vectors (copied from the protocol documents)."""
    data: dict[str, list[dict[str, Any]]] = json.loads(VECTORS_PATH.read_text())
    return data


@pytest.fixture(autouse=True)
def private_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's own folder, and every massaged default path pointing into it.

    A short path under /tmp, not tmp_path: an AF_UNIX socket path is limited to 108 bytes
    and tmp_path under xdist (…/popen-gw3/test_a_long_name0/) can be longer. The
    developer's MASSAGED_ settings ($MASSAGED_CONFIG, $MASSAGED_MQTT_HOST, …) are removed,
    so a test sees the defaults it was written for.
    """
    folder = Path(tempfile.mkdtemp(prefix="msd-t-"))
    for name in list(os.environ):
        if name.startswith("MASSAGED_") and name not in KEEP_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("MASSAGED_DATA_DIR", str(folder / "data"))
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(folder / "config"))
    monkeypatch.setenv("MASSAGED_SIM_RADIO", str(folder / "radio.sock"))
    monkeypatch.setenv("MASSAGED_DAEMON_SOCKET", str(folder / "control.sock"))
    monkeypatch.setenv("MASSAGED_WEB_PORT", "0")  # a free port, never the default 8765
    (folder / "run").mkdir(mode=0o700)  # as a session's runtime folder: there, and private
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder / "run"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
