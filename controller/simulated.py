"""Simulated devices in this process: a Fleet on a private radio socket, drivers connected to it.

Used by ``massaged run --simulate`` and ``massaged demo``. The devices are
served on real endpoints (a pseudo-terminal for the serial belt, the
simulated BLE radio for the others) and reached through the real drivers and
links, so a simulated session exercises exactly the code a real one does.
The radio listens on a socket in a fresh private temporary directory, so it
never collides with a ``massaged simulate`` running on the same machine.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT, Device
from devices.errors import LinkError
from simulator.firmware.base import Firmware
from simulator.fleet import DEFAULT_SPECS, DeviceSpec, Fleet, SimDevice, parse_spec
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

RADIO_SOCKET_NAME = "radio.sock"


class SimulatedDevices:
    """A private Fleet of simulated devices and connected drivers for them (an async context)."""

    def __init__(
        self,
        specs: Sequence[str | DeviceSpec] = DEFAULT_SPECS,
        *,
        speed: float = 1.0,
        record: Path | None = None,
        keep_rows: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        driver_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.specs = [s if isinstance(s, DeviceSpec) else parse_spec(s) for s in specs]
        self.speed = speed
        self.record = record
        self.keep_rows = keep_rows
        """Keep the recording's rows in memory too (tests; a long run grows without bound)."""
        self.connect_timeout = connect_timeout
        self.driver_options = {k: dict(v) for k, v in (driver_options or {}).items()}
        """Extra driver keyword arguments by kind name ("belt", "pillow", "butterfly")."""
        self.recorder: Recorder | None = None
        self.fleet: Fleet | None = None
        self.devices: dict[str, Device] = {}
        """Connected drivers by simulated device id (belt-1, pillow-1, ...)."""
        self._dir: Path | None = None

    @property
    def radio_path(self) -> Path:
        """The private radio socket (only while started)."""
        if self._dir is None:
            raise LinkError("the simulated devices are not started")
        return self._dir / RADIO_SOCKET_NAME

    def sim(self, name: str) -> SimDevice:
        """The served device behind a driver name."""
        if self.fleet is None:
            raise LinkError("the simulated devices are not started")
        return self.fleet.find(name)

    def firmware(self, name: str) -> Firmware:
        """The firmware model behind a driver name."""
        return self.sim(name).firmware

    async def start(self) -> dict[str, Device]:
        """Serve the devices and connect a driver to each; everything is undone on failure."""
        loop = asyncio.get_running_loop()
        self._dir = Path(tempfile.mkdtemp(prefix="massaged-sim-"))
        try:
            if self.record is not None or self.keep_rows:
                self.recorder = Recorder(self.record, t0=loop.time(), speed=self.speed)
                self.recorder.keep_in_memory = self.keep_rows
            self.fleet = Fleet(
                self.specs, radio_path=self.radio_path, recorder=self.recorder, speed=self.speed
            )
            served = await self.fleet.start()
            self.devices = {sim.id: self._driver(sim) for sim in served}
            async with asyncio.timeout(self.connect_timeout):
                await asyncio.gather(
                    *(d.connect(timeout=self.connect_timeout) for d in self.devices.values())
                )
        except BaseException:
            await self.close()
            raise
        logger.info("simulated devices: %s", ", ".join(self.devices))
        return self.devices

    def _driver(self, sim: SimDevice) -> Device:
        from devices.kinds import make_device
        from simulator.ble.backend import SimBleakClient

        options = self.driver_options.get(sim.spec.kind.value, {})
        # The spec's model ("coyote_v2") picks the driver as a record's would; None: the default.
        model = sim.spec.model or ""
        if sim.spec.transport == "serial":
            return make_device(
                sim.spec.kind, sim.address, model=model, transport="serial", name=sim.id, **options
            )
        return make_device(
            sim.spec.kind,
            sim.address,
            model=model,
            transport="ble",
            name=sim.id,
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": str(self.radio_path)},
            **options,
        )

    async def close(self) -> None:
        """Close every driver, the fleet and the recording; remove the socket directory."""
        devices, self.devices = list(self.devices.values()), {}
        await asyncio.gather(*(d.close() for d in devices))
        fleet, self.fleet = self.fleet, None
        if fleet is not None:
            await fleet.close()
        if self.recorder is not None:
            # Closed, but kept: its rows stay readable after the session.
            self.recorder.close()
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
