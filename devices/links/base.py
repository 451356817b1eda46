"""The one link interface every transport implements.

A link moves messages; it knows nothing of what they mean. Serial links are a
byte stream (one source, ``SERIAL_SOURCE``); BLE links carry GATT writes and
notifications, each tagged with its characteristic UUID.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT = 10.0
"""Seconds to open a link (BLE connect and service discovery included)."""
DEFAULT_WRITE_TIMEOUT = 1.0
"""Seconds for one write to be handed to the transport."""
DEFAULT_READ_TIMEOUT = 2.0
"""Seconds for one GATT read."""
SERIAL_SOURCE = "serial"
"""The source name a serial link gives every chunk of received bytes."""


class Hex:
    """Bytes shown as hex in a log line, formatted only if the line is really logged.

    Every frame is logged at DEBUG; calling data.hex() up front would cost more than
    the write itself on every frame, with DEBUG off as it nearly always is.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data

    def __str__(self) -> str:
        return bytes(self.data).hex(" ")


ReceiveCallback = Callable[[str, bytes], None]
"""Called with (source, data) for each chunk or notification received."""
LostCallback = Callable[[str], None]
"""Called once with a reason when the link drops by itself (not on close())."""


class Link(abc.ABC):
    """A connection to one device that moves messages both ways."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._on_receive: ReceiveCallback | None = None
        self._on_lost: LostCallback | None = None

    def set_callbacks(self, on_receive: ReceiveCallback, on_lost: LostCallback) -> None:
        """Where received data and a dropped link are reported; set before open()."""
        self._on_receive = on_receive
        self._on_lost = on_lost

    def _deliver(self, source: str, data: bytes) -> None:
        logger.debug("%s <- %s %s", self.address, source, Hex(data))
        if self._on_receive is not None:
            self._on_receive(source, data)

    def _report_lost(self, reason: str) -> None:
        logger.info("%s: link lost: %s", self.address, reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True while the link can carry data."""

    @abc.abstractmethod
    async def open(self, timeout: float = DEFAULT_OPEN_TIMEOUT) -> None:
        """Open the port or connect; raise LinkError or DeviceTimeoutError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the link; never raises, safe to call twice; no lost callback."""

    @abc.abstractmethod
    async def write(
        self, data: bytes, *, target: str | None = None, timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> None:
        """Send one message (to a characteristic on BLE; target is ignored on serial)."""

    async def read(self, target: str, *, timeout: float = DEFAULT_READ_TIMEOUT) -> bytes:
        """Read a characteristic (BLE only)."""
        from devices.errors import LinkError

        raise LinkError(f"{type(self).__name__} cannot read {target}", device=self.address)
