"""A set of simulated devices served on real endpoints: what ``massaged simulate`` runs.

Serial devices get a pseudo-terminal each (with a stable symlink beside the
radio socket); BLE devices are advertised by the simulated radio, which a
bleak backend in any process on this machine can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from devices.capabilities import DeviceKind
from devices.errors import ConfigError
from devices.links.sim_radio import default_radio_path
from devices.protocols import coyote_v2
from simulator.ble.radio import SimRadio
from simulator.endpoints.pty import PtyEndpoint
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.firmware.coyote_v2 import CoyoteV2Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.firmware.sp1 import SP1Firmware
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

Transport = Literal["serial", "ble"]

DEFAULT_SPECS = ("belt", "pillow", "butterfly")
"""``massaged simulate`` with no --device: one serial VB1 belt, one SP1 pillow, one EB1."""

_KIND_CODES = {DeviceKind.BELT: 0x01, DeviceKind.PILLOW: 0x02, DeviceKind.BUTTERFLY: 0x03}

BUTTERFLY_MODELS = ("eb1", "coyote_v2")
"""The butterfly's models: the EB1 (DG-LAB Coyote V3 protocol) and the Coyote V2."""
_MODEL_ALIASES = {"coyote": "coyote_v2", "coyote_v2": "coyote_v2", "coyote-v2": "coyote_v2"}
"""Spec heads that name a butterfly model directly (``coyote`` is ``butterfly,model=coyote_v2``)."""
_YES, _NO = ("yes", "true", "1"), ("no", "false", "0")


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device to serve, parsed from ``KIND[:TRANSPORT][,OPTION=VALUE...]``."""

    kind: DeviceKind
    transport: Transport
    motors: int = 6
    heater: bool = True
    battery: int | None = None
    """Percent, or None for mains power (the pillow and the serial belt default to mains)."""
    model: str | None = None
    """A butterfly's model (BUTTERFLY_MODELS; None: eb1); None for the other kinds."""
    name: str | None = None
    """The advertised name, if not the model's own (a real Coyote V3 says 47L121000)."""
    advertise_services: bool = True
    """False: the advertisement carries the name only (always so for a Coyote V2)."""


def parse_spec(text: str) -> DeviceSpec:
    """Parse a device spec such as ``belt``, ``belt:ble,motors=4,heater=no`` or ``butterfly``.

    Butterflies: ``butterfly,model=coyote_v2`` (or just ``coyote``) for a Coyote V2, and
    ``butterfly,name=47L121000,advertise_services=false`` for an EB1 advertising as a real
    Coyote V3 does.
    """
    head, *options = [part.strip() for part in text.split(",")]
    kind_text, _, transport_text = head.partition(":")
    values: dict[str, Any] = {}
    if kind_text.lower() in _MODEL_ALIASES:
        kind = DeviceKind.BUTTERFLY
        values["model"] = _MODEL_ALIASES[kind_text.lower()]
    else:
        try:
            kind = DeviceKind(kind_text.lower())
        except ValueError:
            valid = ", ".join([*(k.value for k in DeviceKind), "coyote"])
            raise ConfigError(
                f"device {text!r}: unknown kind {kind_text!r}; valid: {valid}"
            ) from None
    transport: Transport
    if not transport_text:
        transport = "serial" if kind == DeviceKind.BELT else "ble"
    elif transport_text in ("serial", "ble"):
        transport = "serial" if transport_text == "serial" else "ble"
    else:
        raise ConfigError(f"device {text!r}: transport must be serial or ble")
    if transport == "serial" and kind != DeviceKind.BELT:
        raise ConfigError(f"device {text!r}: only the belt has a serial link")
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ConfigError(f"device {text!r}: option {option!r} is not KEY=VALUE")
        if key == "motors" and kind == DeviceKind.BELT:
            if value not in ("4", "6"):
                raise ConfigError(f"device {text!r}: motors must be 4 or 6, not {value!r}")
            values["motors"] = int(value)
        elif key == "heater" and kind in (DeviceKind.BELT, DeviceKind.PILLOW):
            if value.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise ConfigError(f"device {text!r}: heater must be yes or no, not {value!r}")
            values["heater"] = value.lower() in ("yes", "true", "1")
        elif key == "battery":
            if value.lower() == "mains":
                values["battery"] = None
            elif value.isdigit() and 0 <= int(value) <= 100:
                values["battery"] = int(value)
            else:
                raise ConfigError(f"device {text!r}: battery must be 0..100 or mains")
        elif key == "model" and kind == DeviceKind.BUTTERFLY:
            model = _MODEL_ALIASES.get(value.lower(), value.lower())
            if model not in BUTTERFLY_MODELS:
                valid = ", ".join(BUTTERFLY_MODELS)
                raise ConfigError(f"device {text!r}: model must be one of {valid}, not {value!r}")
            values["model"] = model
        elif key == "name" and kind == DeviceKind.BUTTERFLY:
            if not value or len(value.encode()) > 29 or not value.isprintable():
                raise ConfigError(f"device {text!r}: name must be 1..29 printable bytes")
            values["name"] = value
        elif key == "advertise_services" and kind == DeviceKind.BUTTERFLY:
            if value.lower() not in (*_YES, *_NO):
                raise ConfigError(f"device {text!r}: advertise_services must be yes or no")
            values["advertise_services"] = value.lower() in _YES
        else:
            raise ConfigError(f"device {text!r}: unknown option {key!r} for a {kind.value}")
    if transport == "ble":
        # Bluetooth devices run on batteries; the serial belt hangs on its USB cable.
        values.setdefault("battery", 100)
    if kind == DeviceKind.BUTTERFLY:
        values.setdefault("model", "eb1")
        if values["model"] == "coyote_v2":
            if values.get("advertise_services"):
                raise ConfigError(f"device {text!r}: a Coyote V2 advertises its name only")
            values["advertise_services"] = False
    return DeviceSpec(kind=kind, transport=transport, **values)


@dataclass
class SimDevice:
    """One served device: its firmware, its link faults and where hosts reach it."""

    id: str
    spec: DeviceSpec
    firmware: Firmware
    faults: LinkFaults
    address: str = ""
    endpoint: PtyEndpoint | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The JSON line ``massaged simulate`` prints for this device."""
        return {
            "id": self.id,
            "kind": self.spec.kind.value,
            "link": self.spec.transport,
            "address": self.address,
            "name": self.firmware.ble_name or self.id,
            **({"model": self.spec.model} if self.spec.model else {}),
            **self.extra,
        }


def build_firmware(
    spec: DeviceSpec, device_id: str, serial: str, *, recorder: Recorder | None, speed: float
) -> Firmware:
    """The firmware model for a spec."""
    now = asyncio.get_running_loop().time()
    if spec.kind == DeviceKind.BELT:
        return VB1Firmware(
            device_id,
            motors=spec.motors,
            heater=spec.heater,
            serial=f"SIMB{serial}",
            battery=spec.battery,
            ble=spec.transport == "ble",
            recorder=recorder,
            speed=speed,
            now=now,
        )
    if spec.kind == DeviceKind.PILLOW:
        return SP1Firmware(
            device_id,
            serial=serial,
            battery=spec.battery,
            heater=spec.heater,
            recorder=recorder,
            speed=speed,
            now=now,
        )
    battery = 100 if spec.battery is None else spec.battery
    if spec.model == "coyote_v2":
        return CoyoteV2Firmware(
            device_id,
            name=spec.name or coyote_v2.BLE_NAME,
            battery=battery,
            recorder=recorder,
            speed=speed,
            now=now,
        )
    return EB1Firmware(
        device_id,
        serial=f"47L12{serial}",
        battery=battery,
        name=spec.name,
        advertise_services=spec.advertise_services,
        recorder=recorder,
        speed=speed,
        now=now,
    )


class Fleet:
    """Serves a list of simulated devices until closed."""

    def __init__(
        self,
        specs: list[DeviceSpec],
        *,
        radio_path: Path | None = None,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        links_outlive_host: bool = True,
    ) -> None:
        self.specs = specs
        self.radio_path = radio_path or default_radio_path()
        self.link_dir = self.radio_path.parent
        self.recorder = recorder
        self.speed = speed
        # BlueZ's rule by default: a BLE link outlives the host process that opened it.
        self.radio = SimRadio(self.radio_path, links_outlive_host=links_outlive_host)
        self.devices: list[SimDevice] = []

    async def claim(self) -> None:
        """Take the radio socket, or raise RadioError("busy") having touched nothing.

        Done before any endpoint exists: a second simulator on the same radio must
        refuse without replacing (and later removing) the first one's serial links.
        """
        await self.radio.start()

    async def start(self) -> list[SimDevice]:
        """Claim the radio, then create every firmware and open its endpoint."""
        counts: dict[DeviceKind, int] = {}
        await self.claim()
        try:
            for spec in self.specs:
                n = counts[spec.kind] = counts.get(spec.kind, 0) + 1
                device_id = f"{spec.kind.value}-{n}"
                serial = f"{n:04d}"
                firmware = build_firmware(
                    spec, device_id, serial, recorder=self.recorder, speed=self.speed
                )
                faults = LinkFaults()
                device = SimDevice(device_id, spec, firmware, faults)
                if spec.transport == "serial":
                    self.link_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
                    link_path = self.link_dir / device_id
                    endpoint = PtyEndpoint(firmware, faults=faults, link_path=link_path)
                    await endpoint.start()
                    device.endpoint = endpoint
                    device.address = str(endpoint.path)
                    device.extra["tty"] = endpoint.tty_name
                    self.radio.register_serial(
                        spec.kind.value,
                        device.address,
                        device_id,
                        firmware=firmware,
                        faults=faults,
                        wake=endpoint.wake,
                    )
                else:
                    address = f"5A:1D:{_KIND_CODES[spec.kind]:02X}:00:00:{n:02X}"
                    self.radio.add_peripheral(firmware, address=address, faults=faults)
                    device.address = address
                self.devices.append(device)
        except BaseException:
            await self.close()
            raise
        return self.devices

    async def close(self) -> None:
        """Stop every endpoint and the radio; safe to call twice."""
        await self.radio.close()
        for device in self.devices:
            if device.endpoint is not None:
                with contextlib.suppress(Exception):
                    await device.endpoint.stop()

    def find(self, name: str) -> SimDevice:
        """A device by id, address or advertised name."""
        for device in self.devices:
            if name in (device.id, device.address, device.firmware.ble_name):
                return device
        known = ", ".join(d.id for d in self.devices)
        raise ConfigError(f"no simulated device {name!r}; there are: {known}")

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
