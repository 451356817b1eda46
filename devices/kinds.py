"""The device kinds and models massaged drives: the one source of per-kind knowledge.

A **kind** (:class:`KindSpec`, in :data:`KINDS`) is what a program and the
safety layer see: a vibration belt, a shiatsu pillow, an EMS butterfly, with
its output class, the maximum of its unit and what a preview or a plot shows.
A **model** (:class:`ModelSpec`, in :data:`MODELS`) is one device of a kind:
its driver, how it is found (BLE name prefixes first, advertised services
second) and how it is reached (GATT roles, serial port). Adding a model is one
entry in :data:`MODELS` beside its own protocol and driver modules.

``classify`` names the model an advertisement belongs to; ``make_device`` builds
a driver over the right link from a kind (and, optionally, a model) and an address.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from devices.capabilities import (
    Capabilities,
    DeviceKind,
    Kneading,
    Place,
    belt_motors,
    butterfly_channels,
)
from devices.errors import ConfigError
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from devices.protocols import coyote_v2, eb1, sp1, vb1

if TYPE_CHECKING:
    from devices.drivers.base import Device
    from devices.links.base import Link

logger = logging.getLogger(__name__)

Transport = Literal["serial", "ble"]


class KindSpec(NamedTuple):
    """What every device of one kind shares, whatever its model."""

    kind: DeviceKind
    label: str
    """What a user calls it: "vibration belt"."""
    output: type[Output]
    """The output class its drivers take."""
    maximum: int
    """The protocol maximum of its unit (its output class's): caps are fractions of it."""
    quantity: str
    """What its unit measures: "level", "speed", "strength"."""
    unit: str
    """The unit as a plot's axis label shows it."""
    ems: bool
    """Electrical stimulation: never on a child (controller.profiles)."""
    movements: bool
    """Its output comes in repetitions the method counts (motors, EMS contractions); a
    pillow kneads on and on."""
    plot_rows: bool
    """A plot draws one strip per channel (six motors on one set of axes would hide each other)."""
    plot_full_scale: float | None
    """The value of a full strip in a plot; None: the panel's highest value."""
    preview: Capabilities
    """What a program is rendered onto when no real device is given."""
    default_model: str
    """The model a device record without one is (records made before models existed)."""
    pulse: Callable[[Capabilities], Output]
    """A short, gentle output a person can feel: the pairing dialog's "did you feel it?"."""

    def off(self, capabilities: Capabilities | None = None) -> Output:
        """Everything off, shaped for these capabilities (the preview's without)."""
        return self.output.off_for(capabilities or self.preview)


class ModelSpec(NamedTuple):
    """One device model: its driver, how it is found and how it is reached."""

    model: str
    """The model name: "VB1", "EB1", "Coyote V2" (a driver's Capabilities.model starts with it)."""
    kind: DeviceKind
    driver_path: str
    """Where the driver class is, "module:Class" (imported by :attr:`driver` when first used).

    By path, not the class: naming the drivers here would import every driver and
    asyncio with them into each process that only looks a kind or a model up.
    """
    ble_name_prefixes: tuple[str, ...]
    """Advertised local-name prefixes; classification tries these first."""
    service_uuids: tuple[str, ...]
    """Services that identify the model when advertised (may be empty: found by name)."""
    write_uuid: str
    notify_uuids: tuple[str, ...]
    write_response: bool
    """BLE writes with response (EB1's 0x150A is "write"; the belt and pillow write without)."""
    baudrate: int | None = None
    """Set when the model also comes as a USB serial device."""
    usb_product_prefix: str | None = None
    """The USB product string of its serial model."""

    @property
    def serial(self) -> bool:
        """The model also comes as a USB serial device (and that is its default link)."""
        return self.baudrate is not None

    @property
    def driver(self) -> Callable[..., Device]:
        """The driver class, called as driver(link, name=..., **driver_opts)."""
        return _driver_class(self.driver_path)


def _driver_class(path: str) -> Callable[..., Device]:
    """The class a "module:Class" path names, imported on first use."""
    # importlib caches the module: after the first device of a model this is a dict lookup.
    from importlib import import_module

    module, _, name = path.partition(":")
    driver: Callable[..., Device] = getattr(import_module(module), name)
    return driver


def _belt_pulse(caps: Capabilities) -> Output:
    # The neck motors only, at a fifth of full: felt at once, nowhere near a massage level.
    return BeltOutput(tuple(50 if m.place is Place.NECK else 0 for m in caps.motors))


def _pillow_pulse(caps: Capabilities) -> Output:
    return PillowOutput(speed=1)


def _butterfly_pulse(caps: Capabilities) -> Output:
    # Strength 6 of 200 at a low intensity: a tingle, below any contraction.
    pulse = EmsChannelOutput(strength=6, frequency=40, intensity=30)
    return ButterflyOutput(a=pulse, b=pulse)


KINDS: dict[DeviceKind, KindSpec] = {
    DeviceKind.BELT: KindSpec(
        kind=DeviceKind.BELT,
        label="vibration belt",
        output=BeltOutput,
        maximum=BeltOutput.maximum,
        quantity="level",
        unit=f"level 0..{BeltOutput.maximum}",
        ems=False,
        movements=True,
        plot_rows=True,
        plot_full_scale=float(BeltOutput.maximum),
        preview=Capabilities(
            kind=DeviceKind.BELT, model="VB1 (preview)", motors=belt_motors(6), heater=True
        ),
        default_model="VB1",
        pulse=_belt_pulse,
    ),
    DeviceKind.PILLOW: KindSpec(
        kind=DeviceKind.PILLOW,
        label="shiatsu pillow",
        output=PillowOutput,
        maximum=PillowOutput.maximum,
        quantity="speed",
        unit=f"speed 0..{PillowOutput.maximum}",
        ems=False,
        movements=False,
        plot_rows=False,
        plot_full_scale=None,
        preview=Capabilities(
            kind=DeviceKind.PILLOW,
            model="SP1 (preview)",
            heater=True,
            kneading=Kneading(nodes=4, max_speed=PillowOutput.maximum),
        ),
        default_model="SP1",
        pulse=_pillow_pulse,
    ),
    DeviceKind.BUTTERFLY: KindSpec(
        kind=DeviceKind.BUTTERFLY,
        label="EMS butterfly",
        output=ButterflyOutput,
        maximum=ButterflyOutput.maximum,
        quantity="strength",
        unit="strength × intensity",
        ems=True,
        movements=True,
        plot_rows=True,
        # EMS programs stay far below the maximum: a full strip at 200 would hide them.
        plot_full_scale=None,
        preview=Capabilities(
            kind=DeviceKind.BUTTERFLY, model="EB1 (preview)", ems_channels=butterfly_channels()
        ),
        default_model="EB1",
        pulse=_butterfly_pulse,
    ),
}
"""Every device kind, in the order lists, plots and the live view show them."""

MODELS: dict[str, ModelSpec] = {
    "VB1": ModelSpec(
        model="VB1",
        kind=DeviceKind.BELT,
        driver_path="devices.drivers.vb1:VB1Driver",
        ble_name_prefixes=(vb1.BLE_NAME_PREFIX,),
        service_uuids=(vb1.NUS_SERVICE,),
        write_uuid=vb1.NUS_RX,
        notify_uuids=(vb1.NUS_TX,),
        write_response=False,
        baudrate=vb1.BAUDRATE,
        usb_product_prefix=vb1.USB_PRODUCT_PREFIX,
    ),
    "SP1": ModelSpec(
        model="SP1",
        kind=DeviceKind.PILLOW,
        driver_path="devices.drivers.sp1:SP1Driver",
        ble_name_prefixes=(sp1.BLE_NAME_PREFIX,),
        service_uuids=(sp1.SERVICE_UUID,),
        write_uuid=sp1.DATA_UUID,
        notify_uuids=(sp1.DATA_UUID,),
        write_response=False,
    ),
    "EB1": ModelSpec(
        model="EB1",
        kind=DeviceKind.BUTTERFLY,
        driver_path="devices.drivers.eb1:EB1Driver",
        # A real DG-LAB Coyote V3 advertises "47L121000" and not its service.
        ble_name_prefixes=(eb1.BLE_NAME_PREFIX, "47L12"),
        # Not the battery service 0x180A: that is the SIG's Device Information,
        # which many other devices advertise.
        service_uuids=(eb1.SERVICE_UUID,),
        write_uuid=eb1.WRITE_UUID,
        notify_uuids=(eb1.NOTIFY_UUID, eb1.BATTERY_UUID),
        write_response=True,
    ),
    coyote_v2.MODEL: ModelSpec(
        model=coyote_v2.MODEL,
        kind=DeviceKind.BUTTERFLY,
        driver_path="devices.drivers.coyote_v2:CoyoteV2Driver",
        # It advertises "D-LAB ESTIM01" and none of its services: found by name only.
        ble_name_prefixes=coyote_v2.NAME_PREFIXES,
        service_uuids=(coyote_v2.SERVICE_UUID,),
        write_uuid=coyote_v2.STRENGTH_UUID,
        notify_uuids=(coyote_v2.STRENGTH_UUID, coyote_v2.BATTERY_UUID),
        write_response=True,
    ),
}
"""Every device model massaged drives, by model name."""


def kind_spec(kind: DeviceKind | str) -> KindSpec:
    """The table entry of a kind given as DeviceKind or its name; ConfigError if unknown."""
    try:
        return KINDS[DeviceKind(kind)]
    except ValueError:
        names = ", ".join(k.value for k in DeviceKind)
        raise ConfigError(f"device kind {kind!r} is not one of {names}") from None


def model_spec(model: str, kind: DeviceKind | str | None = None) -> ModelSpec:
    """A model's entry; ConfigError if unknown or of another kind.

    "" is the kind's default model (records made before models existed); a model as
    a driver reports it ("VB1-6", "SP1-01") is found by its table name's prefix.
    """
    if not model:
        if kind is None:
            raise ConfigError("a model or a device kind is needed")
        model = kind_spec(kind).default_model
    spec = MODELS.get(model) or _BY_SQUASHED.get(_squash(model))
    if spec is None:
        # The longest table name the reported model starts with: "VB1-6" is a VB1.
        prefixed = [m for name, m in MODELS.items() if model.startswith(f"{name}-")]
        spec = max(prefixed, key=lambda m: len(m.model), default=None)
    if spec is None:
        raise ConfigError(f"device model {model!r} is not one of {', '.join(MODELS)}")
    if kind is not None and spec.kind != kind_spec(kind).kind:
        raise ConfigError(f"a {model} is a {spec.kind.value}, not a {DeviceKind(kind).value}")
    return spec


def _squash(model: str) -> str:
    """A model name as typed on a command line: "coyotev2" is "Coyote V2"."""
    return "".join(c for c in model.lower() if c.isalnum())


_BY_SQUASHED = {_squash(name): spec for name, spec in MODELS.items()}


def models_of(kind: DeviceKind | str) -> Iterator[ModelSpec]:
    """Every model of a kind, its default first."""
    spec = kind_spec(kind)
    yield MODELS[spec.default_model]
    yield from (m for m in MODELS.values() if m.kind == spec.kind and m.model != spec.default_model)


def off_output(capabilities: Capabilities) -> Output:
    """Everything off for the device these capabilities describe."""
    return kind_spec(capabilities.kind).off(capabilities)


def classify(name: str | None, service_uuids: list[str] | tuple[str, ...]) -> ModelSpec | None:
    """The model an advertisement belongs to: by name prefix first, then by advertised service.

    Names first because real devices (the DG-LAB Coyotes) do not advertise their services.
    """
    if name:
        for spec in MODELS.values():
            if name.startswith(spec.ble_name_prefixes):
                return spec
    uuids = {normalize_uuid(u) for u in service_uuids}
    for spec in MODELS.values():
        if any(normalize_uuid(u) in uuids for u in spec.service_uuids):
            return spec
    return None


def serial_model(product: str) -> ModelSpec | None:
    """The serial model whose USB product string this is, or None."""
    for spec in MODELS.values():
        if spec.usb_product_prefix and product.startswith(spec.usb_product_prefix):
            return spec
    return None


class LinkOptions(NamedTuple):
    """What a link factory may need besides the address."""

    ble_backend: Any = None
    """A bleak client backend class (the simulator's SimBleakClient), None for the platform's."""
    ble_kwargs: Mapping[str, Any] | None = None
    """Extra keyword arguments for the BleakClient."""


def serial_link(spec: ModelSpec, address: str, options: LinkOptions) -> Link:
    """A serial port (path or pyserial URL) for a model with a serial form."""
    if spec.baudrate is None:
        raise ConfigError(f"a {spec.model} {spec.kind.value} has no serial model: {address!r}")
    # Imported here: the serial link pulls in pyserial, which BLE-only setups do not need.
    from devices.links.serial import SerialLink

    return SerialLink(address, baudrate=spec.baudrate)


def ble_link(spec: ModelSpec, address: str, options: LinkOptions) -> Link:
    """A BLE connection with the model's write and notify characteristics."""
    # Imported here: bleak's client is heavy and not needed to drive a serial belt.
    from devices.links.ble import BleLink

    return BleLink(
        address,
        write_uuid=spec.write_uuid,
        notify_uuids=spec.notify_uuids,
        write_response=spec.write_response,
        client_backend=options.ble_backend,
        client_kwargs=dict(options.ble_kwargs or {}),
    )


_SIG_BASE = "-0000-1000-8000-00805f9b34fb"


def normalize_uuid(uuid: str) -> str:
    """A UUID in its 128-bit lowercase form (16- and 32-bit SIG short forms expanded)."""
    uuid = uuid.lower()
    if len(uuid) == 4:
        return f"0000{uuid}{_SIG_BASE}"
    if len(uuid) == 8:
        return f"{uuid}{_SIG_BASE}"
    return uuid


# Patterns as text, compiled by re (and kept in its cache) on first use: only pairing
# and making a link look at an address, and compiling costs every import of the table.
_SERIAL_URL = r"(?i)^[a-z][a-z0-9+.-]*://"
_WINDOWS_PORT = r"(?i)^(\\\\\.\\)?COM\d+$"
_BLE_MAC = r"(?i)^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$"
_BLE_UUID = r"(?i)^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$"


def guess_transport(address: str) -> Transport | None:
    """ "serial" for a path or pyserial URL, "ble" for a MAC or CoreBluetooth UUID, else None."""
    if address.startswith(("/", "./", "../", "~")) or re.match(_SERIAL_URL, address):
        return "serial"
    if re.match(_WINDOWS_PORT, address):
        return "serial"
    if re.match(_BLE_MAC, address) or re.match(_BLE_UUID, address):
        return "ble"
    return None


def make_link(
    kind: DeviceKind | str,
    address: str,
    *,
    model: str = "",
    transport: Transport | None = None,
    ble_backend: Any = None,
    ble_kwargs: Mapping[str, Any] | None = None,
) -> Link:
    """The link to a device of this kind (and model; "" is the kind's default) at this address."""
    spec = model_spec(model, kind)
    options = LinkOptions(ble_backend=ble_backend, ble_kwargs=ble_kwargs)
    chosen = transport or guess_transport(address)
    if chosen == "serial":
        return serial_link(spec, address, options)
    if chosen == "ble":
        return ble_link(spec, address, options)
    if chosen is not None:
        raise ConfigError(f"transport must be 'serial' or 'ble', not {chosen!r}")
    # An address that names no transport by its form: a serial model's is a port.
    return (serial_link if spec.serial else ble_link)(spec, address, options)


def make_device(
    kind: DeviceKind | str,
    address: str,
    *,
    model: str = "",
    transport: Transport | None = None,
    name: str | None = None,
    ble_backend: Any = None,
    ble_kwargs: Mapping[str, Any] | None = None,
    **driver_opts: Any,
) -> Device:
    """A driver for a device of this kind (and model) at this address, not yet connected."""
    spec = model_spec(model, kind)
    link = make_link(
        spec.kind,
        address,
        model=spec.model,
        transport=transport,
        ble_backend=ble_backend,
        ble_kwargs=ble_kwargs,
    )
    logger.debug("%s: %s over %s", name or address, spec.model, type(link).__name__)
    return spec.driver(link, name=name, **driver_opts)
