"""The async interface every device driver implements.

The owner (the session runner) holds a *lease*: the driver keeps the device's
watchdog fed only while the lease is valid, so a stalled or dead owner lets
the firmware stop the device by itself, exactly as the protocols intend.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from devices.capabilities import Capabilities, DeviceKind
from devices.errors import LinkError
from devices.events import DeviceEvent, StatusReport
from devices.links.base import Link
from devices.outputs import Output

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to open the link and identify the device."""
DEFAULT_COMMAND_TIMEOUT = 2.0
"""Seconds for one command, retries included."""

EventListener = Callable[[DeviceEvent], None]


class Device(abc.ABC):
    """One massage device, driven over its wire protocol."""

    kind: ClassVar[DeviceKind]

    def __init__(self, link: Link, *, name: str | None = None) -> None:
        self.link = link
        self.name = name or link.address
        self._listeners: list[EventListener] = []
        self._lease_until = 0.0
        self._capabilities: Capabilities | None = None

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
        """Keep the device fed for this many more seconds (called by a healthy owner)."""
        self._lease_until = max(self._lease_until, asyncio.get_running_loop().time() + seconds)

    def revoke_lease(self) -> None:
        """Stop feeding at once: the firmware's own watchdog takes over."""
        self._lease_until = 0.0

    @property
    def lease_valid(self) -> bool:
        """True while the owner's lease runs."""
        return asyncio.get_running_loop().time() < self._lease_until

    # -- events ---------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call listener for every event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _emit(self, event: DeviceEvent) -> None:
        logger.info("%s: %s", self.name, type(event).__name__)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a faulty listener must not take the driver down
                logger.exception("%s: event listener failed", self.name)
