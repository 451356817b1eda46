"""Wires a running daemon to the MQTT bridge: devices, states, events in; requests out.

The bridge only ever calls the daemon through controller.api.dispatch (the same
validation and limits as the command line); this module feeds it what the
daemon sees: the paired devices and their links, each device's state during a
session (from the runner's snapshot, rate-limited by the bridge), and session
and pairing events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from controller.mqtt.bridge import MqttBridge, snapshot_states
from controller.mqtt.discovery import DeviceDescription
from controller.session import SessionState, output_channels
from devices.errors import MassagedError

if TYPE_CHECKING:
    from controller.config import Config
    from controller.daemon import Daemon

logger = logging.getLogger(__name__)

STATE_PERIOD_S = 0.5
"""How often a running session's device states are handed to the bridge (it rate-limits)."""
OUTCOME_EVENTS = {
    "completed": "finished",
    "stopped": "stopped",
    "emergency_stop": "emergency_stop",
    "fault": "fault",
    "cut": "cut",
}
"""A session outcome as the Home Assistant event entity names it."""


class DaemonBridge:
    """Keeps an MqttBridge in step with a Daemon until closed."""

    def __init__(self, daemon: Daemon, bridge: MqttBridge) -> None:
        self.daemon = daemon
        self.bridge = bridge
        self._remove_listener = daemon.add_listener(self._on_daemon_event)
        self._pump: asyncio.Task[None] | None = None
        self._known: tuple[tuple[str, bool], ...] = ()

    async def start(self) -> None:
        """Announce the devices, start the bridge and the session-state pump."""
        self._sync_devices(force=True)
        # Devices connected before the bridge existed: tell it where each one stands now.
        for entry in list(self.daemon.supervisor.devices.values()):
            self._on_daemon_event("device", entry.describe())
        await self.bridge.start()
        self._pump = asyncio.get_running_loop().create_task(self._pump_states(), name="mqtt-pump")

    async def close(self) -> None:
        """Stop feeding the bridge, then close it (offline, disconnect)."""
        self._remove_listener()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.bridge.close()

    def _descriptions(self) -> list[DeviceDescription]:
        out = []
        for entry in self.daemon.supervisor.devices.values():
            caps = None
            with contextlib.suppress(MassagedError):
                caps = entry.device.capabilities
            out.append(DeviceDescription.from_record(entry.record, caps))
        return out

    def _sync_devices(self, *, force: bool = False) -> None:
        # Rediscover only when membership or what is known of a device changed.
        known = tuple(
            (name, entry.link == "up" or entry.device.is_connected)
            for name, entry in self.daemon.supervisor.devices.items()
        )
        if (
            force
            or {n for n, _ in known} != {n for n, _ in self._known}
            or any(
                up and not was
                for (n, up), (_, was) in zip(sorted(known), sorted(self._known), strict=False)
            )
        ):
            self.bridge.set_devices(self._descriptions())
        self._known = known

    def _on_daemon_event(self, kind: str, data: dict[str, Any]) -> None:
        try:
            if kind == "device":
                self._sync_devices()
                name = str(data["name"])
                self.bridge.device_available(name, data.get("link") == "up")
                self.bridge.device_state(
                    name,
                    {
                        "link": data.get("link"),
                        "battery": data.get("battery"),
                        "last_error": data.get("last_error") or None,
                    },
                )
            elif kind == "pairing":
                self._sync_devices(force=True)
                self.bridge.publish_event("pairing", data)
            elif kind == "session_event":
                # Steps, pauses, gentler presses, device events within a session.
                self.bridge.publish_event("session", data)
            elif kind == "session":
                state = data.get("state")
                if state == "ended":
                    outcome = str(data.get("outcome"))
                    self.bridge.session_event(None, OUTCOME_EVENTS.get(outcome, "fault"), data)
                    self._push_idle_states()
                elif state == "emergency_stop":
                    self.bridge.publish_event("session", {"event": "emergency_stop"})
                else:
                    self.bridge.publish_event("session", data)
            elif kind == "device_event":
                self.bridge.publish_event("device", data)
        except Exception:  # MQTT must never disturb the daemon
            logger.exception("MQTT: handling a daemon %s event failed", kind)

    def _push_idle_states(self) -> None:
        for name, entry in self.daemon.supervisor.devices.items():
            outputs: dict[str, Any] = {}
            with contextlib.suppress(MassagedError):
                outputs = output_channels(entry.device.output)
            self.bridge.device_state(
                name,
                {
                    "running": False,
                    "paused": False,
                    "program": None,
                    "step": None,
                    "time_left": None,
                    "outputs": outputs,
                },
            )

    async def _pump_states(self) -> None:
        while True:
            runner = self.daemon.runner
            if runner is not None and runner.state != SessionState.ENDED:
                for name, state in snapshot_states(runner.snapshot()).items():
                    self.bridge.device_state(name, state)
            await asyncio.sleep(STATE_PERIOD_S)


async def start_bridge(daemon: Daemon, config: Config) -> DaemonBridge:
    """Create and start the bridge for a daemon from the [mqtt] configuration."""
    bridge = MqttBridge(config.mqtt, daemon, default_program=config.session.default_program)
    link = DaemonBridge(daemon, bridge)
    await link.start()
    return link
