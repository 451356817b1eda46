"""What the drivers share: request/answer matching with resends, tasks, the link's lifecycle.

Each protocol names its answers differently (VB1 by SEQ, SP1 by answer type,
EB1 by B1 sequence or BE), so the key is generic. A request registers its
future *before* the first write, so an answer delivered at once is never missed.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from devices.drivers.base import Device
from devices.errors import (
    DeviceTimeoutError,
    LinkError,
    LinkLostError,
    MassagedError,
    SafetyError,
)
from devices.events import LinkLost
from devices.links.base import Hex, Link

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")

Accept = Callable[[A], bool]
"""Decides whether a message under the right key really answers this request."""


class _Waiter(Generic[A]):
    """One outstanding request: its future and what counts as its answer."""

    __slots__ = ("accept", "future")

    def __init__(self, future: asyncio.Future[A], accept: Accept[A] | None) -> None:
        self.future = future
        self.accept = accept


class RequestTracker(Generic[K, A]):
    """Outstanding requests by key; resend on silence, give up after the last retry."""

    def __init__(self, *, device: str, answer_timeout: float, max_retries: int) -> None:
        self.device = device
        self.answer_timeout = answer_timeout
        self.max_retries = max_retries
        self._waiting: dict[K, _Waiter[A]] = {}
        self.resends = 0
        """Resends made so far (for tests and diagnostics)."""

    async def request(
        self,
        key: K,
        send: Callable[[], Awaitable[None]],
        *,
        what: str,
        accept: Accept[A] | None = None,
    ) -> A:
        """Send, wait answer_timeout, resend up to max_retries times; LinkLostError after that."""
        if key in self._waiting:
            raise RuntimeError(f"{self.device}: a request under {key!r} is already outstanding")
        loop = asyncio.get_running_loop()
        waiter: _Waiter[A] = _Waiter(loop.create_future(), accept)
        self._waiting[key] = waiter
        try:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    self.resends += 1
                    logger.info("%s: no answer to %s, resend %d", self.device, what, attempt)
                    # A fresh future for the resend, in place before its write like the
                    # first one (nothing awaits between the time-out and this line).
                    waiter.future = loop.create_future()
                future = waiter.future
                await send()
                if not future.done():
                    # The time-out fails this attempt's future itself: one timer, no
                    # second future to wait on (this runs for every command).
                    timer = loop.call_later(self.answer_timeout, _expire, future)
                    try:
                        await future
                    except _AnswerTimeout:
                        continue
                    finally:
                        timer.cancel()
                return future.result()
            raise LinkLostError(
                f"no answer to {what} after {self.max_retries} retries", device=self.device
            )
        finally:
            if self._waiting.get(key) is waiter:
                del self._waiting[key]
            future = waiter.future
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                # Mark a failure set while we were writing as seen: it is raised or superseded.
                future.exception()

    def resolve(self, key: K, answer: A) -> bool:
        """Hand an answer to the request under key; False when nobody wanted it."""
        waiter = self._waiting.get(key)
        if waiter is None or waiter.future.done():
            return False
        if waiter.accept is not None and not waiter.accept(answer):
            return False
        waiter.future.set_result(answer)
        return True

    def reject(self, key: K, error: BaseException) -> bool:
        """Fail the request under key (a refusal); False when nobody waited."""
        waiter = self._waiting.get(key)
        if waiter is None or waiter.future.done():
            return False
        waiter.future.set_exception(error)
        return True

    def fail_all(self, error: BaseException) -> None:
        """Fail every outstanding request (the link is gone)."""
        for waiter in self._waiting.values():
            if not waiter.future.done():
                waiter.future.set_exception(error)


class _AnswerTimeout(Exception):
    """No answer within answer_timeout: this attempt is over (never leaves request())."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_AnswerTimeout())


class TaskSet:
    """The background tasks of one driver: started by name, all cancelled and awaited together."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run coro as a background task; its failure is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.device}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "%s: task %s failed", self.device, task.get_name(), exc_info=task.exception()
            )

    def cancel(self) -> None:
        """Cancel every task but the caller's own (callable from sync callbacks)."""
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def cancel_and_wait(self, timeout: float = 1.0) -> None:
        """Cancel every task but the caller's own and wait for them to end."""
        self.cancel()
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current]
        if others:
            _, pending = await asyncio.wait(others, timeout=timeout)
            for task in pending:
                logger.warning("%s: task %s did not end in time", self.device, task.get_name())


WRITE_TIMEOUT = 1.0
"""Seconds for one write to be handed to the link."""
CLOSE_TIMEOUT = 2.0
"""Seconds to close a link before giving up on it."""


class LinkDevice(Device):
    """What the three drivers share: link callbacks, lost-link handling, logged writes."""

    def __init__(self, link: Link, *, name: str | None = None, write_target: str | None) -> None:
        super().__init__(link, name=name)
        self._tasks = TaskSet(self.name)
        self._write_target = write_target
        self._link_up = False
        """The link is open and ours (set before identification ends)."""
        self._connected = False
        """Identified and ready for outputs."""

    @property
    def is_connected(self) -> bool:
        """True while the link is open and the device identified."""
        return self._connected and self._link_up and self.link.is_open

    @property
    def lease_revoked(self) -> bool:
        """True when the owner revoked the lease (or never gave one): stay silent."""
        return self._lease_until == 0.0

    # -- hooks ----------------------------------------------------------------

    @abc.abstractmethod
    def _on_receive(self, source: str, data: bytes) -> None:
        """Bytes or a notification arrived from the link."""

    @abc.abstractmethod
    def _on_lost(self, error: LinkLostError) -> None:
        """The link is gone: fail outstanding requests and zero the driver's idea of output."""

    # -- link -----------------------------------------------------------------

    async def _open_link(self, timeout: float) -> None:
        """Open the link afresh with our callbacks, leftovers of a lost session cleaned up."""
        await self._tasks.cancel_and_wait()
        if self.link.is_open:
            await self._close_link()
        self.link.set_callbacks(self._on_receive, self._on_link_lost)
        await self.link.open(timeout)
        self._link_up = True

    async def _close_link(self) -> None:
        """Close the link; never raises."""
        self._link_up = False
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the close completes (the task would go on).
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.link.close()
        except Exception:  # close() is best effort by contract
            logger.warning("%s: closing the link failed", self.name, exc_info=True)

    def _on_link_lost(self, reason: str) -> None:
        self._mark_lost(reason)

    def _mark_lost(self, reason: str) -> None:
        """Consider the link lost: stop tasks, fail requests, report LinkLost once."""
        if not self._link_up:
            return
        was_connected = self._connected
        self._link_up = False
        self._connected = False
        self._tasks.cancel()
        self._on_lost(LinkLostError(reason, device=self.name))
        if was_connected:
            self._emit(LinkLost(self.name, self.kind, reason))

    async def _give_up(self, error: LinkLostError) -> None:
        """The device stopped answering after every retry: report it and drop the link."""
        self._mark_lost(str(error))
        await self._close_link()

    async def _write(
        self, data: bytes, *, target: str | None = None, generation: int | None = None
    ) -> None:
        """Write one message, logged in hex; a failed write means the link is lost.

        generation: the lease generation the frame was built under, for a frame that puts
        something out or keeps it on; checked right before the bytes go, so a frame built
        before a gap in service is never sent after it (SafetyError). None: a frame that
        is always safe to send (a stop, a zeroing, a query, the handshake).
        """
        if not self._link_up:
            raise LinkLostError("link is not open", device=self.name)
        if generation is not None:
            self.check_lease()
            if generation != self._lease_gen:
                logger.info("%s: dropped %s, built before a gap in service", self.name, Hex(data))
                raise SafetyError(f"{self.name}: a frame built before a gap in service: not sent")
        logger.debug("%s -> %s", self.name, Hex(data))
        try:
            await self.link.write(data, target=target or self._write_target, timeout=WRITE_TIMEOUT)
        except LinkError as exc:
            self._mark_lost(f"write failed: {exc}")
            raise LinkLostError(f"write failed: {exc}", device=self.name) from exc

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise LinkError("not connected", device=self.name)

    async def _open_and_identify(
        self, timeout: float, what: str, handshake: Callable[[], Awaitable[A]]
    ) -> A:
        """Open the link and run the handshake within timeout; close the link on any failure."""
        try:
            async with asyncio.timeout(timeout):
                await self._open_link(timeout)
                return await handshake()
        except TimeoutError as exc:
            await self._close_link()
            if isinstance(exc, DeviceTimeoutError):
                raise
            raise DeviceTimeoutError(f"no {what} within {timeout} s", device=self.name) from exc
        except BaseException:
            await self._close_link()
            raise

    stop_timeout: float = 1.5
    """Seconds close() gives the device to acknowledge its stop."""

    async def close(self) -> None:
        """Stop every output (best effort), end background tasks, close the link. Never raises."""
        try:
            if self.is_connected:
                async with asyncio.timeout(self.stop_timeout):
                    await self._stop_on_close()
        except (MassagedError, TimeoutError) as exc:
            logger.warning("%s: stop on close failed: %s", self.name, exc)
        except Exception:
            logger.exception("%s: stop on close failed", self.name)
        self._forget_outputs()
        await self._teardown()

    @abc.abstractmethod
    async def _stop_on_close(self) -> None:
        """Tell the device to stop everything and wait for its answer."""

    @abc.abstractmethod
    def _forget_outputs(self) -> None:
        """After close: the driver's idea of the outputs is zero."""

    async def _teardown(self) -> None:
        """The end of close(): tasks, requests, link; never raises."""
        self.revoke_lease()
        self._connected = False
        try:
            await self._tasks.cancel_and_wait()
        except Exception:
            logger.warning("%s: stopping tasks failed", self.name, exc_info=True)
        was_up = self._link_up
        self._link_up = False
        if was_up:
            self._on_lost(LinkLostError("closed", device=self.name))
        await self._close_link()
