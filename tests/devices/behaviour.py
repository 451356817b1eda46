"""The behaviour every driver shows over every endpoint, written once.

In the style of pyatv's common functional tests: ``DeviceBehaviour`` holds the
tests; a kind mixin (``BeltBehaviour``, ``PillowBehaviour``,
``ButterflyBehaviour``) says what that kind does, and a second model of a kind
subclasses its kind's mixin (``CoyoteV2Behaviour``); an endpoint mixin says how a
driver and its simulated firmware are wired together. A test module combines
one of each, e.g. ``class TestBeltMemory(MemoryEndpoint, BeltBehaviour)``.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import pytest

from devices.capabilities import Capabilities, DeviceKind, KneadDirection
from devices.drivers.base import Device
from devices.drivers.vb1 import VB1Driver
from devices.errors import DeviceRefusedError, LinkError, SafetyError
from devices.events import (
    AutoOff,
    DeviceEvent,
    DeviceFault,
    EmsWheelChanged,
    LinkLost,
    Overheated,
    PillowOccupancy,
    StopButtonPressed,
)
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from devices.protocols import vb1
from simulator.firmware.base import Firmware

Pair = tuple[Device, Firmware]


async def wait_until(
    condition: Callable[[], bool], timeout: float = 2.0, what: str = "condition"
) -> None:
    """Poll condition every 10 ms; fail the test after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def numeric(outputs: dict[str, int | str]) -> dict[str, int]:
    """The numeric channels of a firmware's outputs."""
    return {k: v for k, v in outputs.items() if isinstance(v, int)}


@dataclass
class EventCase:
    """One physical event a kind reports: how to cause it and what must follow."""

    name: str
    trigger: Callable[[Firmware, float], None]
    expected: type[DeviceEvent]
    drive_first: bool = True
    firmware_options: dict[str, Any] = field(default_factory=dict)
    matches: Callable[[DeviceEvent], bool] = lambda _event: True
    verify: Callable[[Device, Firmware], Awaitable[None]] | None = None


class DeviceBehaviour(abc.ABC):
    """The shared driver tests; subclasses provide an endpoint and a kind."""

    kind: ClassVar[DeviceKind]

    # -- what an endpoint provides ----------------------------------------------

    @abc.abstractmethod
    async def make_pair(self, **firmware_options: Any) -> Pair:
        """A driver (not connected) and the simulated firmware at the other end of its link."""

    @abc.abstractmethod
    async def drop_link(self, device: Device, firmware: Firmware) -> None:
        """Cut the link under a connected driver, as a radio or cable would."""

    @abc.abstractmethod
    async def restore_link(self, device: Device, firmware: Firmware) -> None:
        """Let the link be opened again."""

    @abc.abstractmethod
    def firmware_changed(self, device: Device, firmware: Firmware) -> None:
        """The test poked the firmware: let the endpoint carry what it sends."""

    def now(self) -> float:
        """The firmware's clock."""
        return asyncio.get_running_loop().time()

    # -- what a kind provides ---------------------------------------------------

    @abc.abstractmethod
    def check_capabilities(self, caps: Capabilities) -> None:
        """Assert the capabilities match the simulated device."""

    @abc.abstractmethod
    def output_on(self, caps: Capabilities) -> Output:
        """An output that switches something on."""

    @abc.abstractmethod
    def firmware_shows(self, outputs: dict[str, int | str], output: Output) -> bool:
        """True when the firmware's physical outputs show what was applied."""

    status_keys: ClassVar[frozenset[str]]

    @abc.abstractmethod
    def event_cases(self) -> Sequence[EventCase]:
        """The kind's own events."""

    # -- fixtures and helpers ---------------------------------------------------

    @pytest.fixture
    async def pair(self) -> AsyncIterator[Pair]:
        """A fresh driver and firmware, closed after the test."""
        device, firmware = await self.make_pair()
        try:
            yield device, firmware
        finally:
            await device.close()

    async def drive(self, device: Device, firmware: Firmware, lease: float = 30.0) -> Output:
        """Connect if needed, switch something on and wait until the firmware shows it."""
        if not device.is_connected:
            await device.connect()
        device.renew_lease(lease)
        output = self.output_on(device.capabilities)
        await device.apply(output)
        await wait_until(
            lambda: self.firmware_shows(firmware.outputs, output), what="the output on"
        )
        return output

    # -- the tests --------------------------------------------------------------

    async def test_connect_identifies(self, pair: Pair) -> None:
        device, firmware = pair
        caps = await device.connect()
        assert caps.kind == self.kind
        assert device.kind == self.kind
        assert device.capabilities == caps
        self.check_capabilities(caps)
        assert device.is_connected
        assert device.output.is_zero
        assert firmware.is_quiet

    async def test_apply_before_connect_is_refused(self, pair: Pair) -> None:
        device, _ = pair
        with pytest.raises(LinkError):
            _ = device.capabilities
        with pytest.raises(LinkError):
            await device.stop()

    async def test_drive(self, pair: Pair) -> None:
        device, firmware = pair
        output = await self.drive(device, firmware)
        assert device.output == output
        assert not firmware.is_quiet

    async def test_stop_zeroes_every_output(self, pair: Pair) -> None:
        device, firmware = pair
        await self.drive(device, firmware)
        await device.stop()
        await wait_until(lambda: firmware.is_quiet, timeout=0.5, what="the firmware quiet")
        assert device.output.is_zero
        assert not device.lease_valid
        await asyncio.sleep(0.3)
        assert firmware.is_quiet, "something came back on after stop"

    async def test_status(self, pair: Pair) -> None:
        device, firmware = pair
        await self.drive(device, firmware)
        report = await device.status()
        assert report.device == device.name
        assert report.kind == self.kind
        assert set(report.outputs) == self.status_keys
        for channel, value in numeric(firmware.outputs).items():
            if channel in report.outputs and not channel.startswith("output_"):
                assert report.outputs[channel] == value, channel

    async def test_events(self) -> None:
        for case in self.event_cases():
            device, firmware = await self.make_pair(**case.firmware_options)
            events: list[DeviceEvent] = []
            device.add_listener(events.append)
            try:
                if case.drive_first:
                    await self.drive(device, firmware)
                else:
                    await device.connect()
                case.trigger(firmware, self.now())
                self.firmware_changed(device, firmware)
                await wait_until(
                    lambda case=case, events=events: any(  # type: ignore[misc]
                        isinstance(e, case.expected) and case.matches(e) for e in events
                    ),
                    timeout=3.0,
                    what=f"{case.expected.__name__} ({case.name})",
                )
                event = next(e for e in events if isinstance(e, case.expected))
                assert event.device == device.name
                assert event.kind == self.kind
                if case.verify is not None:
                    await case.verify(device, firmware)
            finally:
                await device.close()

    async def test_link_loss_is_reported_and_reconnect_works(self, pair: Pair) -> None:
        device, firmware = pair
        events: list[DeviceEvent] = []
        device.add_listener(events.append)
        await self.drive(device, firmware)
        await self.drop_link(device, firmware)
        await wait_until(
            lambda: any(isinstance(e, LinkLost) for e in events), what="a LinkLost event"
        )
        assert sum(isinstance(e, LinkLost) for e in events) == 1
        assert not device.is_connected
        assert device.output.is_zero
        with pytest.raises(LinkError):
            await device.apply(self.output_on(device.capabilities))
        await self.restore_link(device, firmware)
        caps = await device.connect()
        self.check_capabilities(caps)
        await self.drive(device, firmware)

    async def test_lease_expiry_stops_outputs(self, pair: Pair) -> None:
        device, firmware = pair
        await self.drive(device, firmware, lease=0.4)
        # Both, in either order: a unit whose output lapses on its own (a butterfly's
        # waveform runs out 100 ms after the last) can go quiet a moment before the
        # driver's next turn forgets the target, on a loaded machine.
        await wait_until(
            lambda: firmware.is_quiet and device.output.is_zero,
            timeout=1.5,
            what="the firmware quiet and the driver's output at zero",
        )
        await asyncio.sleep(0.3)
        assert firmware.is_quiet, "something came back on after the lease ended"

    async def test_close_stops_and_never_raises(self, pair: Pair) -> None:
        device, firmware = pair
        await self.drive(device, firmware)
        await device.close()
        assert firmware.is_quiet
        assert not device.is_connected
        await device.close()


# -- the kinds -------------------------------------------------------------------


class BeltBehaviour(DeviceBehaviour):
    """A 4-motor VB1 belt with a heater, on mains power."""

    kind = DeviceKind.BELT
    status_keys = frozenset({"motor1", "motor2", "motor3", "motor4", "heater"})

    def check_capabilities(self, caps: Capabilities) -> None:
        assert len(caps.motors) == 4
        assert caps.heater
        assert caps.model.startswith("VB1")
        assert caps.firmware == "1.0"
        assert caps.serial

    def output_on(self, caps: Capabilities) -> Output:
        return BeltOutput(levels=(10, 64, 128, 255)[: len(caps.motors)], heat=caps.heater)

    def firmware_shows(self, outputs: dict[str, int | str], output: Output) -> bool:
        assert isinstance(output, BeltOutput)
        levels = [outputs.get(f"motor{i}") for i in range(1, len(output.levels) + 1)]
        return levels == list(output.levels) and outputs.get("heater", 0) == int(output.heat)

    def event_cases(self) -> Sequence[EventCase]:
        async def after_stop_button(device: Device, firmware: Firmware) -> None:
            assert device.output.is_zero
            assert firmware.is_quiet
            # Rule 6: the host must not switch the belt back on by itself.
            with pytest.raises(SafetyError):
                await device.apply(self.output_on(device.capabilities))
            assert firmware.is_quiet
            cast(VB1Driver, device).clear_stop_button()
            await device.apply(self.output_on(device.capabilities))
            await wait_until(lambda: not firmware.is_quiet, what="the belt on again")

        async def after_overheat(device: Device, firmware: Firmware) -> None:
            assert device.output.is_zero
            assert firmware.is_quiet
            with pytest.raises(DeviceRefusedError) as refused:
                await device.apply(self.output_on(device.capabilities))
            assert refused.value.code == vb1.NakCode.OVERHEAT

        return (
            EventCase(
                "stop button",
                lambda fw, now: fw.press_stop_button(now),  # type: ignore[attr-defined]
                StopButtonPressed,
                verify=after_stop_button,
            ),
            EventCase(
                "overheat",
                lambda fw, now: fw.overheat(now),  # type: ignore[attr-defined]
                Overheated,
                verify=after_overheat,
            ),
        )


class PillowBehaviour(DeviceBehaviour):
    """An SP1 pillow with 4 nodes and a heater, on mains power."""

    kind = DeviceKind.PILLOW
    status_keys = frozenset({"speed", "direction", "heater"})

    def check_capabilities(self, caps: Capabilities) -> None:
        assert caps.kneading is not None
        assert caps.kneading.nodes == 4
        assert caps.kneading.max_speed == 3
        assert caps.heater
        assert caps.model.startswith("SP1")

    def output_on(self, caps: Capabilities) -> Output:
        return PillowOutput(speed=2, direction=KneadDirection.AUTO_REVERSE, heat=caps.heater)

    def firmware_shows(self, outputs: dict[str, int | str], output: Output) -> bool:
        assert isinstance(output, PillowOutput)
        return (
            outputs.get("speed") == output.speed
            and outputs.get("direction") == output.direction.value
            and outputs.get("heater", 0) == int(output.heat)
        )

    async def test_status(self, pair: Pair) -> None:
        device, firmware = pair
        await self.drive(device, firmware)
        report = await device.status()
        assert report.kind == self.kind
        assert set(report.outputs) == self.status_keys
        assert report.outputs == {"speed": 2, "direction": 2, "heater": 1}
        assert report.battery is None
        assert report.temperature is not None

    def event_cases(self) -> Sequence[EventCase]:
        async def after_empty(device: Device, firmware: Firmware) -> None:
            with pytest.raises(SafetyError):
                await device.apply(PillowOutput(speed=1))
            events: list[DeviceEvent] = []
            device.add_listener(events.append)
            firmware.set_occupied(True, self.now())  # type: ignore[attr-defined]
            self.firmware_changed(device, firmware)
            await wait_until(
                lambda: any(isinstance(e, PillowOccupancy) and not e.empty for e in events),
                what="the pillow occupied again",
            )
            device.renew_lease(10)
            await device.apply(PillowOutput(speed=1))
            await wait_until(lambda: firmware.outputs.get("speed") == 1, what="kneading")

        async def after_auto_off(device: Device, firmware: Firmware) -> None:
            await wait_until(lambda: firmware.is_quiet, what="the pillow still")
            assert device.output.is_zero

        async def after_overheat(device: Device, firmware: Firmware) -> None:
            await wait_until(lambda: firmware.outputs.get("heater") == 0, what="the heater cut")
            assert not cast(PillowOutput, device.output).heat

        return (
            EventCase(
                "empty pillow",
                lambda fw, now: fw.set_occupied(False, now),  # type: ignore[attr-defined]
                PillowOccupancy,
                drive_first=False,
                matches=lambda e: isinstance(e, PillowOccupancy) and e.empty,
                verify=after_empty,
            ),
            EventCase(
                "auto-off",
                lambda fw, now: None,
                AutoOff,
                # 15 simulated minutes pass in about 0.3 s; physics only, the wire is real time.
                firmware_options={"speed": 3000.0, "heater": False},
                verify=after_auto_off,
            ),
            EventCase(
                "overheat",
                lambda fw, now: fw.overheat(now),  # type: ignore[attr-defined]
                Overheated,
                verify=after_overheat,
            ),
        )


class ButterflyBehaviour(DeviceBehaviour):
    """An EB1 butterfly with soft limits 200/200 (the driver's too)."""

    kind = DeviceKind.BUTTERFLY
    status_keys = frozenset({"strength_a", "strength_b", "output_a", "output_b"})

    def check_capabilities(self, caps: Capabilities) -> None:
        assert [ch.name for ch in caps.ems_channels] == ["A", "B"]
        assert all(ch.max_strength == 200 for ch in caps.ems_channels)
        assert all(ch.max_raise_per_100ms == 5 for ch in caps.ems_channels)
        assert caps.model == "EB1"

    def output_on(self, caps: Capabilities) -> Output:
        return ButterflyOutput(
            a=EmsChannelOutput(strength=12, frequency=50, intensity=100),
            b=EmsChannelOutput(strength=8, frequency=100, intensity=50),
        )

    def firmware_shows(self, outputs: dict[str, int | str], output: Output) -> bool:
        assert isinstance(output, ButterflyOutput)
        return (
            outputs.get("strength_a") == output.a.strength
            and outputs.get("strength_b") == output.b.strength
            and cast(int, outputs.get("output_a", 0)) > 0
            and cast(int, outputs.get("output_b", 0)) > 0
        )

    def event_cases(self) -> Sequence[EventCase]:
        async def after_wheel(device: Device, firmware: Firmware) -> None:
            assert device.strengths == (4, 8)  # type: ignore[attr-defined]
            assert device.user_ceiling == (4, None)  # type: ignore[attr-defined]
            # Ask for more: the wheel's word stands on A, B follows the program.
            await device.apply(
                ButterflyOutput(
                    a=EmsChannelOutput(strength=30, frequency=50, intensity=100),
                    b=EmsChannelOutput(strength=12, frequency=100, intensity=50),
                )
            )
            await wait_until(lambda: firmware.outputs.get("strength_b") == 12, what="B at 12")
            assert firmware.outputs.get("strength_a") == 4

        return (
            EventCase(
                "wheel",
                lambda fw, now: fw.turn_wheel(4, None, now),  # type: ignore[attr-defined]
                EmsWheelChanged,
                matches=lambda e: isinstance(e, EmsWheelChanged) and e.strength_a == 4,
                verify=after_wheel,
            ),
        )


class CoyoteV2Behaviour(ButterflyBehaviour):
    """A Coyote V2: the butterfly's promises, with caps held on the host and no wheel.

    Where EB1 reports its wheel, a Coyote V2 that holds a strength the host did not
    write is a fault (DeviceFault): the driver lowers the channel to the lower of the
    two values and never raises past it this session.
    """

    def check_capabilities(self, caps: Capabilities) -> None:
        assert [ch.name for ch in caps.ems_channels] == ["A", "B"]
        assert all(ch.max_strength == 200 for ch in caps.ems_channels)
        assert all(ch.max_raise_per_100ms == 5 for ch in caps.ems_channels)
        assert caps.model == "Coyote V2"

    def event_cases(self) -> Sequence[EventCase]:
        async def after_fault(device: Device, firmware: Firmware) -> None:
            # The unit jumped A to 30 by itself: A falls back to the 12 written, and stays.
            await wait_until(lambda: firmware.outputs.get("strength_a") == 12, what="A at 12")
            assert device.user_ceiling == (12, None)  # type: ignore[attr-defined]
            # Every value A takes from here on, not a sample: a loaded machine may starve a
            # waveform, and A then comes back through 0 and a ramp, never past 12.
            taken: list[int | str] = []
            firmware.on_output = lambda channel, value: (
                taken.append(value) if channel == "strength_a" else None
            )
            try:
                await device.apply(
                    ButterflyOutput(
                        a=EmsChannelOutput(strength=30, frequency=50, intensity=100),
                        b=EmsChannelOutput(strength=12, frequency=100, intensity=50),
                    )
                )
                await wait_until(lambda: firmware.outputs.get("strength_b") == 12, what="B at 12")
                await asyncio.sleep(0.3)
                await wait_until(
                    lambda: firmware.outputs.get("strength_a") == 12, what="A held at 12"
                )
            finally:
                firmware.on_output = None
            assert all(isinstance(v, int) and v <= 12 for v in taken), taken

        return (
            EventCase(
                "a strength the host did not write",
                lambda fw, now: fw.turn_wheel(30, None, now),  # type: ignore[attr-defined]
                DeviceFault,
                verify=after_fault,
            ),
        )
