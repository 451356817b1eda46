"""Keeps every paired device connected while the daemon runs, and nothing more.

Each device has one task: connect, then wait for the link to drop (or poll
its battery now and then), then reconnect with exponential backoff and
jitter. Each outage is logged once when it starts, once every tenth attempt
and once when it ends, not on every try. While idle the devices are
connected but unpowered: drivers leave every output at zero on connect and
nobody renews their lease. During a session the runner owns its devices
(it reconnects them itself through a fresh ramp), so the supervisor stands
back for those until they are given back; their link is still reported as it
is, read from the device, since the web page and MQTT availability show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.backoff import Backoff
from controller.store import DeviceRecord
from devices.drivers.base import Device
from devices.errors import MassagedError
from devices.events import DeviceEvent, LinkLost, LowBattery

logger = logging.getLogger(__name__)

STATUS_POLL_S = 60.0
"""How often an idle connected device is asked for its battery and temperature."""
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Supervised:
    """One paired device and what the supervisor knows about it."""

    record: DeviceRecord
    device: Device
    link: str = "down"
    """"up", "down" or "connecting"."""
    last_error: str = ""
    battery: int | None = None
    temperature: int | None = None
    in_session: bool = False
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by the supervisor's task while it connects, closes or polls the device: a
    session takes the device only once that is over, so one device never has two
    connects (the supervisor's and the session's) running at once."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    remove_listener: Callable[[], None] | None = None

    def current_link(self) -> str:
        """The link now. A lent device is reconnected by its session, not by the
        supervisor, so its link is read from the device itself."""
        if self.in_session:
            return "up" if self.device.is_connected else "down"
        return self.link

    def describe(self) -> dict[str, object]:
        """The device as the API reports it."""
        caps = None
        with contextlib.suppress(MassagedError):
            caps = self.device.capabilities
        return {
            "name": self.record.name,
            "kind": self.record.kind.value,
            "address": self.record.address,
            "transport": self.record.transport,
            "model": caps.model if caps else self.record.model,
            "firmware": caps.firmware if caps else self.record.firmware,
            "serial": caps.serial if caps else self.record.serial,
            "link": self.current_link(),
            "in_session": self.in_session,
            "battery": self.battery,
            "temperature": self.temperature,
            "heater": bool(caps.heater) if caps else None,
            "caps": dict(self.record.caps),
            "last_error": self.last_error,
        }


class DeviceSupervisor:
    """Connects and reconnects paired devices; lends them to sessions."""

    def __init__(
        self,
        make_device: Callable[[DeviceRecord], Device],
        *,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        on_change: Callable[[str], None] | None = None,
        on_event: Callable[[str, DeviceEvent], None] | None = None,
    ) -> None:
        self._make_device = make_device
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._new_backoff()  # bad settings are refused here, not later inside a task
        self._on_change = on_change
        self._on_event = on_event
        self.devices: dict[str, Supervised] = {}
        self._closing = False

    def _new_backoff(self) -> Backoff:
        # Jitter keeps several devices (or daemons) from retrying in lockstep.
        return Backoff(self.reconnect_min, self.reconnect_max, jitter=0.5)

    # -- membership -------------------------------------------------------------

    def add(self, record: DeviceRecord) -> Supervised:
        """Start looking after a paired device."""
        if record.name in self.devices:
            raise ValueError(f"{record.name} is already supervised")
        device = self._make_device(record)
        entry = Supervised(record=record, device=device)
        entry.remove_listener = device.add_listener(functools.partial(self._device_event, entry))
        self.devices[record.name] = entry
        entry.task = asyncio.get_running_loop().create_task(
            self._supervise(entry), name=f"supervise:{record.name}"
        )
        return entry

    async def remove(self, name: str) -> None:
        """Stop looking after a device: stop it, close its link."""
        entry = self.devices.pop(name, None)
        if entry is not None:
            await self._retire(entry)

    def update_record(self, old_name: str, record: DeviceRecord) -> None:
        """A rename or new caps: keep the connection, change the record."""
        entry = self.devices.pop(old_name)
        entry.record = record
        entry.device.name = record.name
        self.devices[record.name] = entry
        self._changed(record.name)

    async def close(self) -> None:
        """Stop every device first, then end every task and link."""
        self._closing = True
        await asyncio.gather(
            *(self._retire(entry) for entry in self.devices.values()), return_exceptions=True
        )
        self.devices.clear()

    async def _retire(self, entry: Supervised) -> None:
        if entry.task is not None:
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
        if entry.remove_listener is not None:
            entry.remove_listener()
        # close() stops outputs first (best effort) and never raises.
        await entry.device.close()

    # -- sessions ----------------------------------------------------------------

    def connected(self, names: Iterable[str] | None = None) -> dict[str, Device]:
        """Connected devices not in a session (all of them, or those named)."""
        wanted = set(self.devices) if names is None else set(names)
        return {
            name: e.device
            for name, e in self.devices.items()
            if name in wanted and e.link == "up" and not e.in_session
        }

    async def lend(self, names: Iterable[str]) -> None:
        """A session takes these devices: the supervisor stands back.

        A device chosen for the session may have dropped since, and the supervisor
        be reconnecting it: that attempt (bounded by its time-out) ends first, and the
        session connects the device itself if it is still down.
        """
        entries = [self.devices[name] for name in names]
        for entry in entries:
            entry.in_session = True  # no new attempt starts from here on
        for entry in entries:
            async with entry.busy:
                pass
            # A loss seen before the session is the session's business now.
            entry.lost.clear()
            entry.link = entry.current_link()
            self._changed(entry.record.name)

    def follow_links(self, names: Iterable[str]) -> None:
        """The session may have reconnected (or lost) these lent devices: report changes."""
        for name in names:
            entry = self.devices.get(name)
            if entry is None or not entry.in_session:
                continue
            link = entry.current_link()
            if link != entry.link:
                entry.link = link
                if link == "up":
                    entry.last_error = ""
                self._changed(name)

    def give_back(self, names: Iterable[str]) -> None:
        """The session is over: look after these devices again."""
        for name in names:
            entry = self.devices.get(name)
            if entry is None:
                continue
            entry.in_session = False
            entry.link = "up" if entry.device.is_connected else "down"
            if entry.link == "down":
                entry.lost.set()
            else:
                # Connected (the session may have reconnected it): a loss from before
                # must not make the supervisor close a good link.
                entry.lost.clear()
            entry.wake.set()
            self._changed(name)

    async def stop_all(self) -> None:
        """Every connected device's outputs to zero at once (emergency stop with no session)."""

        async def stop(entry: Supervised) -> None:
            if entry.device.is_connected:
                try:
                    async with asyncio.timeout(2.0):
                        await entry.device.stop()
                except (MassagedError, TimeoutError, OSError) as err:
                    logger.warning("%s: stop failed: %s", entry.record.name, err)

        await asyncio.gather(*(stop(e) for e in self.devices.values()))

    # -- the loop ------------------------------------------------------------------

    def _device_event(self, entry: Supervised, event: DeviceEvent) -> None:
        if isinstance(event, LinkLost):
            entry.last_error = event.reason or "link lost"
            entry.link = "down"
            if not entry.in_session:
                # In a session the session reconnects it; otherwise the supervisor does.
                entry.lost.set()
            self._changed(entry.record.name)
        elif isinstance(event, LowBattery) and event.percent is not None:
            entry.battery = event.percent
            self._changed(entry.record.name)
        if self._on_event is not None:
            self._on_event(entry.record.name, event)

    async def _supervise(self, entry: Supervised) -> None:
        backoff = self._new_backoff()
        while not self._closing:
            if entry.in_session:
                entry.wake.clear()
                await entry.wake.wait()
                continue
            async with entry.busy:
                if entry.in_session:  # lent while this task waited: hands off
                    continue
                wait = await self._tend(entry, backoff)
            entry.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    waits = [
                        asyncio.ensure_future(entry.lost.wait()),
                        asyncio.ensure_future(entry.wake.wait()),
                    ]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for w in waits:
                            w.cancel()
                        await asyncio.gather(*waits, return_exceptions=True)

    async def _tend(self, entry: Supervised, backoff: Backoff) -> float:
        """One look at an idle device (under entry.busy): close a lost link, connect,
        or poll its status. Returns how long to wait before the next look."""
        name = entry.record.name
        if entry.lost.is_set():
            entry.lost.clear()
            with contextlib.suppress(Exception):
                await entry.device.close()
        if entry.device.is_connected:
            await self._poll_status(entry)
            return STATUS_POLL_S
        entry.link = "connecting"
        self._changed(name)
        try:
            await entry.device.connect(timeout=CONNECT_TIMEOUT_S)
        except (MassagedError, OSError, TimeoutError) as err:
            delay = next(backoff)
            attempts = backoff.attempts
            entry.link = "down"
            entry.last_error = str(err)
            self._changed(name)
            if attempts == 1:
                logger.warning("%s: cannot connect (%s); retrying with backoff", name, err)
            elif attempts % 10 == 0:
                logger.warning("%s: still unreachable after %d attempts", name, attempts)
            else:
                logger.debug("%s: attempt %d failed: %s", name, attempts, err)
            return delay
        if backoff.attempts:
            logger.warning("%s: connected again after %d attempts", name, backoff.attempts)
        else:
            logger.info("%s: connected (%s)", name, entry.device.capabilities.model)
        backoff.reset()
        entry.link = "up"
        entry.last_error = ""
        entry.lost.clear()
        await self._poll_status(entry)
        self._changed(name)
        return STATUS_POLL_S

    async def _poll_status(self, entry: Supervised) -> None:
        try:
            status = await entry.device.status()
        except (MassagedError, OSError, TimeoutError) as err:
            logger.debug("%s: status failed: %s", entry.record.name, err)
            return
        entry.battery = status.battery
        entry.temperature = status.temperature
        self._changed(entry.record.name)

    def _changed(self, name: str) -> None:
        if self._on_change is not None:
            self._on_change(name)
