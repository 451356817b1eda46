"""A running daemon, from a script: the requests ``massaged`` sends over the control socket.

Each method is one request of controller.api (the same validation, answers
and refusals as the command line and MQTT) with a time-out; a refusal raises
:class:`~controller.api.RequestError` with the daemon's reason, a daemon that
does not answer a LinkError (DaemonNotRunningError when none listens).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from controller import control
from controller.errors import RequestError
from devices.errors import DeviceTimeoutError

logger = logging.getLogger(__name__)

POLL_S = 0.25
"""Seconds between two status requests while waiting for a session to end."""


class DaemonClient:
    """Requests to the daemon listening on a control socket."""

    def __init__(
        self, socket: Path | None = None, *, timeout: float = control.DEFAULT_CALL_TIMEOUT
    ) -> None:
        """socket: None for the configured one ([daemon] socket, $MASSAGED_DAEMON_SOCKET)."""
        if socket is None:
            from controller.config import load_config

            socket = Path(load_config().daemon.socket)
        control.check_socket_path(socket)
        self.socket = socket
        self.timeout = timeout

    async def request(self, command: str, payload: dict[str, Any] | None = None) -> Any:
        """One request (controller.api.COMMANDS); the answer's data, RequestError if refused."""
        answer = await control.call(self.socket, command, payload, timeout=self.timeout)
        if answer.get("status") != "ok":
            raise RequestError(f"{command}: {answer.get('error')}")
        return answer.get("data")

    async def status(self) -> dict[str, Any]:
        """The daemon, its devices, the running session ("session") and the last one."""
        data: dict[str, Any] = await self.request("status")
        return data

    async def devices(self) -> list[dict[str, Any]]:
        """The paired devices: name, kind, address, link state."""
        data: list[dict[str, Any]] = await self.request("devices")
        return data

    async def run(
        self,
        program: str,
        *,
        devices: list[str] | None = None,
        profile: str | None = None,
        scale: float = 1.0,
        well_today: bool = False,
        accept_caution: bool = False,
        override_spacing: bool = False,
    ) -> dict[str, Any]:
        """Start a built-in or user program (by id) on paired devices; returns once it runs.

        The confirmations are the person's, as on the command line; the daemon refuses a
        session without them. wait_until_ended() follows it to its end.
        """
        payload: dict[str, Any] = {
            "program": program,
            "scale": scale,
            "well_today": well_today,
            "accept_caution": accept_caution,
            "override_spacing": override_spacing,
        }
        if devices is not None:
            payload["devices"] = devices
        if profile is not None:
            payload["profile"] = profile
        data: dict[str, Any] = await self.request("run", payload)
        return data

    async def wait_until_ended(self, timeout: float) -> dict[str, Any]:
        """How the session ended (the daemon's last_session), polling its status.

        DeviceTimeoutError if it still runs after timeout seconds (it is left running).
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    status = await self.status()
                    if status.get("session") is None:
                        last: dict[str, Any] = status.get("last_session") or {}
                        return last
                    await asyncio.sleep(POLL_S)
        except TimeoutError as err:
            raise DeviceTimeoutError(f"the session still runs after {timeout:g} s") from err

    async def stop(self) -> None:
        """Stop the running session softly (outputs fade out)."""
        await self.request("stop")

    async def emergency_stop(self) -> None:
        """Every output of every device to zero at once."""
        await self.request("emergency_stop")

    async def gentler(self) -> None:
        """It hurts: lower every output now and for the rest of the session."""
        await self.request("gentler")

    async def pause(self) -> None:
        """Pause the running session."""
        await self.request("pause")

    async def resume(self) -> None:
        """Resume the paused session (a fresh ramp from zero)."""
        await self.request("resume")
