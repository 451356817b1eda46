"""The async interface every device driver implements.

The owner (the session runner) holds a *lease*: the driver keeps the device's
watchdog fed only while the lease is valid, so a stalled or dead owner lets
the firmware stop the device by itself, exactly as the protocols intend.

A lease that ran out without being revoked is a *gap in service* (the owner
stalled, its loop was blocked, its process suspended), found by whoever looks
first: renew_lease, the driver's own task, or a write. After a gap the driver
forgets what it held, zeroes the device at once, drops every frame built before
the gap, and reports :class:`~devices.events.ServiceGap`: the device comes back
only through a fresh ramp from zero, never at a held level.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from devices.capabilities import Capabilities, DeviceKind
from devices.errors import LinkError, SafetyError
from devices.events import DeviceEvent, ServiceGap, StatusReport
from devices.links.base import Link
from devices.outputs import Output
from devices.wake import Wake

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to open the link and identify the device."""

EventListener = Callable[[DeviceEvent], None]


class Wakeup(Wake):
    """What a background task sleeps on: a flag, and the next deadline if any.

    The task calls :meth:`arm` *before* it looks at the state it acts on, then
    :meth:`sleep`; whoever changes that state calls :meth:`set` *after* the change.
    A change made after arm(), even while the task awaits a write of its own, leaves
    the flag set and the sleep returns at once, so no wake-up is lost. A task with
    nothing due sleeps without a deadline and costs nothing until it is woken.

    One task sleeps on it at a time. The sleep is one future and at most one timer:
    a deadline that passes resolves the future (``asyncio.timeout`` would cancel the
    task and raise through it, three times the CPU on every timed wake-up).
    """

    __slots__ = ("passes",)

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0
        """How many times the task has looked at its state (for tests and diagnostics)."""

    def arm(self) -> None:
        """Start a pass: forget earlier wake-ups, as the task is about to look at the state."""
        self.clear()
        self.passes += 1

    sleep = Wake.sleep_until
    """Until set() or the loop time deadline (None: until set() only); Wake.sleep_until
    itself, not a coroutine around it (every wake-up of every driver task sleeps here)."""


class Device(abc.ABC):
    """One massage device, driven over its wire protocol."""

    kind: ClassVar[DeviceKind]

    def __init__(self, link: Link, *, name: str | None = None) -> None:
        self.link = link
        self.name = name or link.address
        self._listeners: list[EventListener] = []
        self._lease_until = 0.0
        self._lease_gen = 0
        """Counts the gaps in service: a frame stamped with an older count is never sent."""
        self._capabilities: Capabilities | None = None
        self._wake = Wakeup()
        """What the driver's background task (feeding the device under the lease) sleeps on."""

    # -- identity -----------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What the device can do; known after connect()."""
        if self._capabilities is None:
            raise LinkError("not identified yet: call connect() first", device=self.name)
        return self._capabilities

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool:
        """True while the link is open and the device identified."""

    @property
    @abc.abstractmethod
    def output(self) -> Output:
        """What the driver last asked the device to put out (zero after stop)."""

    # -- lifecycle ------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Capabilities:
        """Open the link, identify the device, leave every output at zero."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop outputs (best effort), cancel background tasks, close the link. Never raises."""

    # -- outputs --------------------------------------------------------------

    @abc.abstractmethod
    async def apply(self, output: Output) -> None:
        """Ask the device for these outputs, under the protocol's own timing rules."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Every output to zero at once; also ends the lease."""

    @abc.abstractmethod
    async def status(self) -> StatusReport:
        """Battery, temperature, flags and current outputs, asked of the device."""

    def reset_session(self) -> None:  # noqa: B027 - most devices keep nothing per session
        """A new session begins: forget per-session state (stop-button latch, wheel ceiling)."""

    # -- lease: feed the watchdog only while the owner says all is well -------

    def renew_lease(self, seconds: float) -> None:
        """Keep the device fed for this many more seconds (called by a healthy owner).

        A lease that lapsed since the last renewal is not extended: that was a gap in
        service (see the module doc), and the new lease starts on a device at zero.
        """
        now = asyncio.get_running_loop().time()
        if self._lease_until != 0.0 and now >= self._lease_until:
            self._service_gap("the lease lapsed")  # check_lease(), at this very reading
        was_valid = now < self._lease_until
        self._lease_until = max(self._lease_until, now + seconds)
        if not was_valid and now < self._lease_until:
            # A lease that starts again may have work for a task sleeping without a
            # deadline. A valid lease moved later needs no wake-up: a task that sleeps
            # until the old expiry looks again then (a healthy owner renews every pass).
            self._lease_changed()

    def revoke_lease(self) -> None:
        """Stop feeding at once: the firmware's own watchdog takes over."""
        self._lease_until = 0.0
        self._lease_changed()

    def check_lease(self) -> bool:
        """Look at the lease now: True when it lapsed unrevoked, a gap found just now."""
        if self._lease_until == 0.0 or asyncio.get_running_loop().time() < self._lease_until:
            return False
        self._service_gap("the lease lapsed")
        return True

    def lapse_lease(self, reason: str) -> None:
        """The owner saw a gap in its own service: end the lease as a lapsed one, now."""
        if self._lease_until != 0.0:
            self._service_gap(reason)

    @property
    def lease_generation(self) -> int:
        """Gaps in service so far: what a frame built now is stamped with."""
        return self._lease_gen

    def _stamp(self, output: Output) -> int:
        """The generation for a frame of a new request; SafetyError if a gap is found now.

        A request handled after a gap was made before it (its owner has not renewed the
        lease since), so it is dropped, unless it asks for zero: the owner starts the
        device again from zero.
        """
        if self.check_lease() and not output.is_zero:
            raise SafetyError(f"{self.name}: request dropped: it predates a gap in service")
        return self._lease_gen

    def _service_gap(self, reason: str) -> None:
        """The lease lapsed: end it, forget what was held, tell the owner (never blocks)."""
        logger.warning("%s: gap in service (%s): back to zero", self.name, reason)
        self._lease_until = 0.0
        self._lease_gen += 1
        self._forget_held_outputs()
        self._wake.set()
        self._emit(ServiceGap(self.name, self.kind, reason))

    def _forget_held_outputs(self) -> None:  # noqa: B027 - a driver with no task keeps nothing
        """After a gap: forget the held targets and let the task zero the device at once.

        Called synchronously, wherever the gap was found; the background task, woken
        right after, does the zeroing under the protocol's own rules.
        """

    def _lease_changed(self) -> None:
        """The lease was revoked or started again: wake the background task (never blocks).

        Called after the new expiry is in place, so the task woken sees the new lease.
        """
        self._wake.set()

    @property
    def wakeups(self) -> int:
        """Passes of the driver's background task so far (none while the device is idle)."""
        return self._wake.passes

    @property
    def lease_valid(self) -> bool:
        """True while the owner's lease runs."""
        return asyncio.get_running_loop().time() < self._lease_until

    # -- events ---------------------------------------------------------------

    def standing_events(self) -> list[DeviceEvent]:
        """Events for conditions in force now (an empty pillow), for a listener that is new.

        An event only says that something changed; a session that starts after the
        change must still learn of the condition, so add_listener hands it these first.
        """
        return []

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call listener for every event (first the standing ones); returns its remover."""
        self._listeners.append(listener)
        for event in self.standing_events():
            self._notify(listener, event)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _emit(self, event: DeviceEvent) -> None:
        logger.info("%s: %s", self.name, type(event).__name__)
        for listener in list(self._listeners):
            self._notify(listener, event)

    def _notify(self, listener: EventListener, event: DeviceEvent) -> None:
        try:
            listener(event)
        except Exception:  # a faulty listener must not take the driver down
            logger.exception("%s: event listener failed", self.name)
