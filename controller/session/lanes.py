"""One device in a running session: its timeline, safety wrapper, worker task and state."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.safety import SafeDevice, SafetyLimits, off_output
from controller.session.states import DeviceState
from devices.capabilities import DeviceKind
from devices.drivers.base import Device
from devices.kinds import kind_spec
from devices.outputs import Output
from programs.timeline import DeviceTimeline


@dataclass(eq=False)
class Lane:
    """One device in the session: its timeline, safety wrapper, worker and state."""

    name: str
    device: Device
    timeline: DeviceTimeline
    limits: SafetyLimits | None
    state: DeviceState = DeviceState.CONNECTING
    safe: SafeDevice | None = None
    request: Output | None = None
    """The latest output for the worker to send (before the safety layer)."""
    posted: Output | None = None
    """What the safety layer would make of request when it was posted."""
    posted_at: float = -math.inf
    """Real time of the last post."""
    force: bool = False
    ramp_from: float = 0.0
    """Plan position of the last fresh start (ramp from zero)."""
    empty_since: float | None = None
    """Wall session time the pillow became empty."""
    heat_override: bool | None = None
    """The user's heater choice for this session (None: as the program says)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    worker: asyncio.Task[None] | None = None
    reconnect: asyncio.Task[None] | None = None
    closing: bool = False
    warned: set[str] = field(default_factory=set)
    remove_listener: Callable[[], None] | None = None
    scaled_from: Output | None = None
    """The cue output the runner last scaled (by scaled_by) into scaled."""
    scaled_by: float = math.nan
    scaled: Output | None = None

    @property
    def kind(self) -> DeviceKind:
        """The device's kind."""
        return self.device.kind

    @functools.cached_property
    def off(self) -> Output:
        """This device's all-off output, shaped as its cues (or its capabilities)."""
        if self.timeline.cues:
            return off_output(self.timeline.cues[0].output)
        return kind_spec(self.kind).off(self.timeline.capabilities)

    @functools.cached_property
    def ems(self) -> bool:
        """Whether the device has EMS channels (whose ramp the runner keeps feeding)."""
        return bool(self.timeline.capabilities.ems_channels)

    @property
    def link_word(self) -> str:
        """The link as the live view shows it: up, down or reconnecting."""
        if self.device.is_connected:
            return "up"
        return "reconnecting" if self.state == DeviceState.LOST else "down"
