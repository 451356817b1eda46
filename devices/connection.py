"""One device for a script: a driver over the right link, connected, and closed afterwards.

The driver keeps to the device's own limits (the protocol's ranges and rules),
and feeds the device's watchdog only under a lease its owner renews: a script
that sets an output and then stalls or forgets leaves a device that stops by
itself. The profile's caps and the method's rules are the session's job
(``controller.run_program``); see docs/library.md.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from devices.capabilities import DeviceKind
from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT, Device
from devices.kinds import Transport, make_device

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def connect(
    kind: DeviceKind | str,
    address: str,
    *,
    transport: Transport | None = None,
    name: str | None = None,
    radio_path: Path | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    **driver_opts: Any,
) -> AsyncIterator[Device]:
    """A connected driver for the device of this kind at this address; stopped and closed on exit.

    radio_path: reach Bluetooth devices through the simulated radio at this socket
    (``massaged simulate``) instead of the machine's Bluetooth; serial addresses are
    the same either way. ConfigError for a bad kind or address, LinkError (or
    DeviceTimeoutError after timeout seconds) when the device cannot be reached.
    """
    ble_backend: Any = None
    ble_kwargs: dict[str, Any] | None = None
    if radio_path is not None:
        # Through the one seam to the simulator, and only here: a script on hardware
        # never loads it (devices.links.sim_radio).
        from devices.links import sim_radio

        ble_backend = importlib.import_module(f"{sim_radio.SIMULATOR_BLE}.backend").SimBleakClient
        ble_kwargs = {"radio": str(radio_path)}
    device = make_device(
        kind,
        address,
        transport=transport,
        name=name,
        ble_backend=ble_backend,
        ble_kwargs=ble_kwargs,
        **driver_opts,
    )
    try:
        await device.connect(timeout=timeout)
        yield device
    finally:
        # close() stops every output first and never raises; it runs on cancellation too.
        await device.close()
