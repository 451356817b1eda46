"""Where the simulated radio listens, and how a scan reaches it: the one seam to the simulator.

``devices`` never imports ``simulator`` by name at module level: a simulated scan
loads the simulator's bleak scanner backend and its serial list here, lazily and
only when asked for (as bleak picks its platform backend), so a daemon on
hardware never loads the simulator. The simulator imports the path from here.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    # Only for the annotation: the simulator and the command line import this module for
    # the radio's path, and must not pay for bleak's import to get it.
    from bleak.backends.scanner import BaseBleakScanner

RADIO_PATH_ENV = "MASSAGED_SIM_RADIO"
"""Environment variable naming the simulated radio's socket (overrides the default)."""
SIMULATOR_BLE = "simulator.ble"
"""The package of the simulated radio: its bleak backend and its wire protocol."""


def default_radio_path() -> Path:
    """Where the simulated radio listens: $MASSAGED_SIM_RADIO, else a private runtime dir."""
    env = os.environ.get(RADIO_PATH_ENV)
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "massaged" if runtime else Path(f"/tmp/massaged-{os.getuid()}")
    return base / "sim-radio.sock"


def scanner_backend() -> type[BaseBleakScanner]:
    """The simulator's bleak scanner backend (takes ``radio=<socket path>``)."""
    module = importlib.import_module(f"{SIMULATOR_BLE}.backend")
    return cast("type[BaseBleakScanner]", module.SimBleakScanner)


async def list_serial(radio_path: Path, timeout: float) -> list[dict[str, Any]]:
    """The simulator's serial endpoints: {kind, path, id} each."""
    wire = importlib.import_module(f"{SIMULATOR_BLE}.wire")
    reply = await wire.radio_request(radio_path, "list_serial", timeout=timeout)
    entries = reply.get("serial", [])
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
