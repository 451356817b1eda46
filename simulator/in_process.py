"""The simulator in this process, for a script: ``async with serve(...) as sim``.

The same Fleet as ``massaged simulate``, on the radio socket the caller names
(by default ``$MASSAGED_SIM_RADIO`` or the standard path), with an optional
recording. Hosts in this process or any other reach the devices as they would
reach ``massaged simulate``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devices.errors import ConfigError
from simulator.fleet import DEFAULT_SPECS, DeviceSpec, Fleet, parse_spec
from simulator.recording import Recorder
from simulator.served import ServedDevice

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Simulator:
    """A running in-process simulator: its radio, its devices and the Fleet behind them."""

    radio_path: Path
    devices: tuple[ServedDevice, ...]
    fleet: Fleet
    """The firmware models and endpoints (fault injection, the firmware's state)."""
    recorder: Recorder | None

    def device(self, name: str) -> ServedDevice:
        """A device by id, address or advertised name; ConfigError naming the known ones."""
        for device in self.devices:
            if name in (device.id, device.address, device.name):
                return device
        known = ", ".join(d.id for d in self.devices)
        raise ConfigError(f"no simulated device {name!r}; there are: {known}")


@contextlib.asynccontextmanager
async def serve(
    devices: Sequence[str | DeviceSpec] = DEFAULT_SPECS,
    *,
    radio_path: Path | None = None,
    speed: float = 1.0,
    record: Path | None = None,
    links_outlive_host: bool = True,
) -> AsyncIterator[Simulator]:
    """Serve simulated devices until the block ends; everything is closed on the way out.

    devices: specs as ``massaged simulate --device`` takes them (``belt``,
    ``belt:ble,motors=4``, ``pillow``, ``butterfly``). speed: the firmware's physical
    timers run this many times faster. record: write the recording (JSON Lines) there.
    ConfigError for a bad spec, speed or recording path, before anything is served;
    RadioError("busy") when another simulator serves this radio.
    """
    specs = [d if isinstance(d, DeviceSpec) else parse_spec(d) for d in devices]
    if not specs:
        raise ConfigError("serve: give at least one device")
    if not math.isfinite(speed) or speed <= 0:
        raise ConfigError(f"serve: speed must be a positive number, not {speed}")
    if record is not None and not record.parent.is_dir():
        raise ConfigError(f"serve: record {record}: the folder {record.parent} does not exist")
    fleet = Fleet(specs, radio_path=radio_path, speed=speed, links_outlive_host=links_outlive_host)
    recorder: Recorder | None = None
    try:
        # The radio first: a refusal (another simulator serves it) leaves everything as it was.
        await fleet.claim()
        if record is not None:
            recorder = Recorder(record, t0=asyncio.get_running_loop().time(), speed=speed)
            recorder.keep_in_memory = False  # a long script must not grow without bound
            fleet.recorder = recorder
        served = await fleet.start()
        yield Simulator(
            radio_path=fleet.radio_path,
            devices=tuple(ServedDevice.from_json(d.describe()) for d in served),
            fleet=fleet,
            recorder=recorder,
        )
    finally:
        await fleet.close()
        if recorder is not None:
            recorder.close()
