"""An in-process endpoint: a Link wired straight to a Firmware model, for fast driver tests.

Writes reach ``firmware.receive`` at once, and what the firmware answers at
once is delivered before ``write()`` returns (a driver registers for an answer
before it writes; on a real link the answer comes a little later, to the same
effect). A task ticks the firmware by its ``next_deadline`` and delivers what
it sends then. Everything delivered goes through the same LinkFaults the real
endpoints honour. Time is the event loop's clock, so firmware timestamps and
driver timestamps compare directly.

The task sleeps until the firmware's next deadline (never further than its
physics needs, Firmware._physics_deadline), a write that brings that deadline
nearer, a change of the LinkFaults (a cut link is reported at once) or
``wake()``, which whoever pokes the firmware from outside (its stop button, a
lifted head) calls, as with the real endpoints. A write that moves the
deadline later (a watchdog fed, a waveform renewed: nearly every one) wakes
nothing: the sleep is postponed to the new deadline (Wake.postpone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from devices.errors import LinkError
from devices.links.base import (
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    SERIAL_SOURCE,
    Hex,
    Link,
)
from devices.wake import Wake
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware

logger = logging.getLogger(__name__)


class Message(NamedTuple):
    """One message that crossed the link, with the loop time it did.

    (A named tuple: one is made for every message either way, and it is made in C.)
    """

    t: float
    channel: str
    """The target written (host -> device) or the source delivered (device -> host)."""
    data: bytes


class MemoryLink(Link):
    """A Link connected directly to a Firmware instance in this process."""

    def __init__(
        self,
        firmware: Firmware,
        *,
        address: str | None = None,
        default_target: str | None = None,
        faults: LinkFaults | None = None,
    ) -> None:
        super().__init__(address or f"memory:{firmware.device_id}")
        self.firmware = firmware
        self.default_target = default_target
        """Where a write without target goes (None: a serial byte stream)."""
        self.faults = faults
        self.written: list[Message] = []
        """Every host -> device message, in order (tests inspect the wire)."""
        self.delivered: list[Message] = []
        """Every device -> host chunk handed to the receiver."""
        self.drop_next_answers = 0
        """Drop this many of the next device -> host messages (a precise LinkFaults)."""
        self.drop_next_writes = 0
        """Lose this many of the next host -> device writes (BLE writes without response)."""
        self.dropped_answers = 0
        """Device -> host messages dropped so far, by either means."""
        self.opens = 0
        """How many times the link was opened."""
        self._open = False
        self._task: asyncio.Task[None] | None = None
        self._wake: Wake | None = None
        self._unwatch: Callable[[], None] | None = None
        self._delayed: set[asyncio.TimerHandle] = set()
        self._in_flight: deque[tuple[float, str, list[bytes]]] = deque()
        """Answers on their way (delay fault): (due, source, chunks), in the order sent."""
        self._sleep_until: float | None = None
        """The deadline the task sleeps until (None: it is not sleeping)."""

    @property
    def is_open(self) -> bool:
        """True while the link can carry data."""
        return self._open

    async def open(self, timeout: float = DEFAULT_OPEN_TIMEOUT) -> None:
        """Connect to the firmware (LinkError while the faults say the link is cut)."""
        if self._open:
            return
        if self.faults is not None and self.faults.link_down:
            raise LinkError("link is down", device=self.address)
        loop = asyncio.get_running_loop()
        self._open = True
        self.opens += 1
        self.firmware.link_up(loop.time())
        self._wake = Wake()
        if self.faults is not None:
            self._unwatch = self.faults.watch(self.wake)
        self._task = loop.create_task(self._run(), name=f"{self.address}:firmware")

    async def close(self) -> None:
        """Disconnect; never raises, safe to call twice; no lost callback."""
        if not self._open:
            return
        self._shut()
        await self._join()

    async def drop(self, reason: str = "link dropped") -> None:
        """Simulate a lost link: the firmware sees link_down, the receiver a lost callback."""
        if not self._open:
            return
        self._shut()
        await self._join()
        self._report_lost(reason)

    def wake(self) -> None:
        """Let the firmware task run now (after poking the firmware from outside)."""
        if self._wake is not None:
            self._wake.set()

    async def write(
        self, data: bytes, *, target: str | None = None, timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> None:
        """Hand one message to the firmware."""
        if not self._open:
            raise LinkError("link is not open", device=self.address)
        if self.faults is not None and self.faults.link_down:
            raise LinkError("link is down", device=self.address)
        loop = asyncio.get_running_loop()
        target = target if target is not None else self.default_target
        now = loop.time()
        self.written.append(Message(now, target or SERIAL_SOURCE, bytes(data)))
        if self.drop_next_writes > 0:
            self.drop_next_writes -= 1
            logger.debug("%s: lost a write %s", self.address, Hex(data))
            return
        if self.faults is not None:
            data = self.faults.corrupt(data)
        self.firmware.receive(bytes(data), now, source=target)
        self._flush(loop)
        sleeping_until = self._sleep_until
        deadline = self.firmware.next_deadline(now)
        if sleeping_until is None or deadline < sleeping_until:
            self.wake()  # due sooner now: the task looks and sleeps again
        elif deadline > sleeping_until and self._wake is not None:
            # Later (a watchdog fed, a waveform renewed): nothing is due before it.
            self._wake.postpone(deadline)
            self._sleep_until = deadline

    async def read(self, target: str, *, timeout: float = DEFAULT_READ_TIMEOUT) -> bytes:
        """A GATT read of the firmware's characteristic."""
        if not self._open:
            raise LinkError("link is not open", device=self.address)
        try:
            return self.firmware.read_attribute(target, asyncio.get_running_loop().time())
        except KeyError as exc:
            raise LinkError(f"no readable characteristic {target}", device=self.address) from exc

    # -- internals -------------------------------------------------------------

    def _shut(self) -> None:
        self._open = False
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        self._in_flight.clear()
        self.firmware.link_down(asyncio.get_running_loop().time())
        # What the firmware sent and the task has not delivered yet went down with the
        # link, as on the radio: never to the host of the next connection.
        self.firmware.take_outgoing()

    async def _join(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        while self._open:
            wake.clear()
            now = loop.time()
            if self.faults is not None and self.faults.link_down:
                self._task = None
                self._shut()
                self._report_lost("link cut")
                return
            self.firmware.tick(now)
            self._flush(loop)
            self._sleep_until = self.firmware.next_deadline(now)
            try:
                await wake.sleep_until(self._sleep_until)
            finally:
                self._sleep_until = None

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        for target, data in self.firmware.take_outgoing():
            source = target or SERIAL_SOURCE
            if self.drop_next_answers > 0:
                self.drop_next_answers -= 1
                self.dropped_answers += 1
                logger.debug("%s: dropped %s", self.address, Hex(data))
                continue
            chunks = [data]
            delay = 0.0
            if self.faults is not None:
                if self.faults.should_drop():
                    self.dropped_answers += 1
                    continue
                data = self.faults.corrupt(data)
                chunks = [data]
                if self.faults.split and len(data) > 1:
                    if target is None:
                        chunks = [data[i : i + 1] for i in range(len(data))]
                    else:
                        half = len(data) // 2
                        chunks = [data[:half], data[half:]]
                delay = self.faults.delay
            if delay > 0:
                self._deliver_later(loop, delay, source, chunks)
            else:
                self._deliver_chunks(source, chunks)

    def _deliver_later(
        self, loop: asyncio.AbstractEventLoop, delay: float, source: str, chunks: list[bytes]
    ) -> None:
        # A link delivers in order, as a GATT notification stream or a serial line does.
        # Each answer's timer delivers every answer due by then, oldest first: two timers
        # due at the same time may fire in either order (the loop's heap does not keep
        # the order of ties, and on virtual time ties are the rule).
        due = loop.time() + delay
        if self._in_flight:
            due = max(due, self._in_flight[-1][0])  # never overtake an earlier answer
        self._in_flight.append((due, source, chunks))

        def fire() -> None:
            self._delayed.discard(handle)
            while self._in_flight and self._in_flight[0][0] <= due:
                _, first_source, first_chunks = self._in_flight.popleft()
                self._deliver_chunks(first_source, first_chunks)

        handle = loop.call_at(due, fire)
        self._delayed.add(handle)

    def _deliver_chunks(self, source: str, chunks: list[bytes]) -> None:
        if not self._open:
            return
        now = asyncio.get_running_loop().time()
        for chunk in chunks:
            self.delivered.append(Message(now, source, chunk))
            try:
                self._deliver(source, chunk)
            except Exception:  # a receiver's bug must not kill the firmware task
                logger.exception("%s: receiver failed", self.address)
