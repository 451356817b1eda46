"""The session's record in the history: its row, events and outcome, written off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from controller.session.states import Outcome

if TYPE_CHECKING:
    # Only for the annotations: controller.store imports Outcome from this package.
    from controller.store import Store

logger = logging.getLogger(__name__)


class SessionHistory:
    """The session's history rows, written off the loop; a failed write is logged, never raised."""

    def __init__(self, store: Store | None, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self.session_id: int | None = None
        self._queue: asyncio.Queue[tuple[float, str, dict[str, Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def begin(
        self,
        program: str,
        devices: list[str],
        profile: str,
        detail: dict[str, Any],
        *,
        simulated: bool = False,
    ) -> None:
        """Record the start; without a session id the rest is skipped."""
        store = self._store
        if store is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                self.session_id = await asyncio.to_thread(
                    functools.partial(
                        store.begin_session,
                        program,
                        devices,
                        profile,
                        detail=detail,
                        simulated=simulated,
                    )
                )
        except Exception as err:  # the massage must not depend on the history
            logger.error("the session is not recorded in the history: %s", err)
            return
        self._task = asyncio.get_running_loop().create_task(
            self._writer(store, self.session_id), name="session-history"
        )

    def add(self, t: float, kind: str, detail: dict[str, Any]) -> None:
        """Queue one event row."""
        if self._task is not None:
            self._queue.put_nowait((round(t, 3), kind, detail))

    async def _writer(self, store: Store, session_id: int) -> None:
        while (item := await self._queue.get()) is not None:
            t, kind, detail = item
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.to_thread(store.add_event, session_id, t, kind, detail)
            except Exception as err:
                logger.error("history: event %s not recorded: %s", kind, err)

    async def finish(self, outcome: Outcome, gentler_presses: int, detail: dict[str, Any]) -> None:
        """Write the queued events and the end; never raises."""
        task, self._task = self._task, None
        if task is not None:
            self._queue.put_nowait(None)
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(task)
            except BaseException as err:
                if isinstance(err, TimeoutError):
                    logger.error("history: events still unwritten after %.0f s", self._timeout)
                # Cancelled or timed out: the writer must not outlive the session.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if not isinstance(err, TimeoutError):
                    raise
        store, session_id = self._store, self.session_id
        if store is None or session_id is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.to_thread(
                    store.finish_session,
                    session_id,
                    outcome,
                    gentler_presses=gentler_presses,
                    detail=detail,
                )
        except Exception as err:  # a failed write must never stop a stop
            logger.error("history: the end of session %d not recorded: %s", session_id, err)
