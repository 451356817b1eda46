"""Simulated SP1 shiatsu pillow firmware (docs/protocols/sp1-pillow.md), sans-IO.

Choices where the protocol leaves room (each one keeps the wire contract):

- A write that is not one whole frame, has a bad SUM or LEN, an unknown or
  device-only CMD, or a payload length that does not fit its CMD is ignored
  silently (the protocol has no NAK; a wrong length is a "bad LEN").
- A SET with a value out of range (speed > 3, direction > 2, heat > 1) is not
  applied; it is still answered (rule 1: every command gets a notification)
  with the unchanged STATE, which also tells the host its SET did not take.
- "Running" means kneading (speed > 0) or heating. A SET that changes speed,
  direction or heat while running keeps the same run: the auto-off clock and
  the run time only start again after the pillow has stopped.
- Run time is simulated seconds since the start of the current run, and 0
  while stopped. Auto-off (rule 3) runs on simulated time (``speed``), like
  every physical process; the once-a-second STATE (rule 2) is a radio
  behaviour and runs on real seconds.
- Every valid SET clears the auto-off flag: the host has seen it and given a
  new order. STOP and QUERY_STATE leave it set.
- "Every change of state" means a change of speed, direction, heat or flags;
  temperature, battery and run time change all the time and ride on the
  once-a-second STATE. A change the answer to a command already shows is not
  notified twice. Flag changes are notified while stopped too (the pressure
  switch matters most before a start).
- Overheat (rule 4) cuts the heater; the heater stays off after the pillow has
  cooled below 45 °C until a new SET asks for heat. A pillow that was only
  heating stops running when its heater is cut.
- Auto-reverse: the "direction" recording channel holds the mode the host set
  ("clockwise", "counter_clockwise" or "auto_reverse"); the nodes' actual turn,
  which flips every 60 simulated seconds of running, is ``rotation_at(now)``.
- The pressure switch does not block kneading: protecting an empty pillow is
  the daemon's job (rule 6); the firmware only reports flag bit2.
- Link drop (rule 5): everything stops at once, and nothing is notified until
  the next connection or write.
- The thermal model settles near 42 °C with the heater on; ``overheat`` or
  ``set_temperature`` (or a larger ``heater_rate``) drive it past 50 °C. On
  battery power, charge drains with speed and heat; the protocol defines
  nothing at 0 %, so the model runs on.
"""

from __future__ import annotations

import logging

from devices.capabilities import DeviceKind, KneadDirection
from devices.errors import FrameError
from devices.links.base import Hex
from devices.protocols import sp1
from devices.protocols.sp1 import Command, StateFlag
from simulator.firmware.base import Firmware
from simulator.firmware.physics import (
    AMBIENT_C,
    SETTLED_C,
    reported_percent,
    settle,
    substeps,
    time_to_cross,
)
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

STATE_INTERVAL = 1.0
"""Rule 2: real seconds between STATE notifications while running."""
REVERSE_SECONDS = 60.0
"""Direction 2 reverses the nodes every 60 (simulated) seconds."""
MODEL_ID = 0x01
MAX_DIRECTION = 2


class SP1Firmware(Firmware):
    """An SP1 pillow: kneading nodes, optional heater, pressure switch, on BLE."""

    kind = DeviceKind.PILLOW

    heater_rate: float = 0.1
    """°C per simulated second the heater adds (at ambient)."""
    cooling_rate: float = 0.1 / 17.0
    """Newton cooling constant per simulated second: heater alone settles at 42 °C."""
    knead_drain: float = 100.0 / 7200.0
    """Battery % per simulated second at speed 3 (two hours)."""
    heater_drain: float = 100.0 / 5400.0
    """Battery % per simulated second with the heater on (ninety minutes)."""

    def __init__(
        self,
        device_id: str,
        *,
        serial: str = "0001",
        battery: int | None = None,
        heater: bool = True,
        nodes: int = 4,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        now: float = 0.0,
        firmware_version: tuple[int, int] = (1, 0),
    ) -> None:
        if battery is not None and not 0 <= battery <= 100:
            raise ValueError(f"battery must be 0..100 or None (mains), not {battery}")
        super().__init__(device_id, recorder=recorder, speed=speed, now=now)
        self.serial = serial
        self.has_heater = heater
        self.nodes = nodes
        self.firmware_version = firmware_version
        self.ble_name = f"{sp1.BLE_NAME_PREFIX}{serial}"
        self.service_uuids = (sp1.SERVICE_UUID,)
        self._speed = 0
        self._direction = KneadDirection.CLOCKWISE
        self._heat = False
        self._temperature = AMBIENT_C
        self._battery: float | None = None if battery is None else float(battery)
        self._auto_off = False
        self._overheated = False
        self._occupied = True
        self._connected = True
        self._run_started: float | None = None
        self._next_state: float | None = None
        self._reverse_anchor = now
        self.auto_off_count = 0
        """How many times the 15-minute auto-off fired."""
        self._notified = self._state_key()
        self._record_outputs(now)

    # -- state seen from outside ------------------------------------------------

    @property
    def knead_speed(self) -> int:
        """Kneading speed 0..3 (0 = still)."""
        return self._speed

    @property
    def direction(self) -> KneadDirection:
        """The direction mode the host set."""
        return self._direction

    @property
    def heat(self) -> bool:
        """True while the heater is on."""
        return self._heat

    @property
    def running(self) -> bool:
        """True while kneading or heating."""
        return self._speed > 0 or self._heat

    @property
    def settled(self) -> bool:
        """Not running, no overheat episode, near ambient temperature."""
        return (
            not self.running
            and not self._overheated
            and abs(self._temperature - AMBIENT_C) < SETTLED_C
        )

    @property
    def temperature(self) -> float:
        """Pillow temperature in °C."""
        return self._temperature

    @property
    def battery(self) -> int | None:
        """Battery percent as reported (rounded up), or None on car or mains power."""
        if self._battery is None:
            return None
        return reported_percent(self._battery)

    @property
    def overheated(self) -> bool:
        """True from 50 °C until the pillow is below 45 °C again (rule 4)."""
        return self._overheated

    @property
    def auto_off_flag(self) -> bool:
        """STATE flag bit0: the auto-off happened (cleared by the next SET)."""
        return self._auto_off

    @property
    def occupied(self) -> bool:
        """True while a head rests on the pillow (pressure switch)."""
        return self._occupied

    @property
    def connected(self) -> bool:
        """False after link_down until the next link_up or write."""
        return self._connected

    @property
    def flags(self) -> int:
        """The STATE flags byte."""
        flags = 0
        if self._auto_off:
            flags |= StateFlag.AUTO_OFF
        if self._overheated:
            flags |= StateFlag.OVERHEAT
        if not self._occupied:
            flags |= StateFlag.EMPTY
        return flags

    def run_time(self, now: float) -> float:
        """Simulated seconds since the current run started (0 while stopped)."""
        if self._run_started is None:
            return 0.0
        return max(0.0, now - self._run_started) * self.speed

    def rotation_at(self, now: float) -> KneadDirection:
        """Which way the nodes turn at now (auto-reverse flips every 60 simulated s)."""
        if self._direction != KneadDirection.AUTO_REVERSE:
            return self._direction
        half_turns = int(max(0.0, now - self._reverse_anchor) * self.speed // REVERSE_SECONDS)
        return KneadDirection.CLOCKWISE if half_turns % 2 == 0 else KneadDirection.COUNTER_CLOCKWISE

    def state(self, now: float) -> sp1.State:
        """The STATE the pillow would report at now."""
        battery = self.battery
        return sp1.State(
            speed=self._speed,
            direction=sp1.DIRECTION_CODES[self._direction],
            heat=self._heat,
            temperature=max(0, min(255, round(self._temperature))),
            battery=0xFF if battery is None else battery,
            flags=self.flags,
            run_time=min(0xFFFF, int(self.run_time(now))),
        )

    # -- wire -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """One write from the host: one whole frame, or it is ignored silently."""
        if source is not None and source != sp1.DATA_UUID:
            logger.debug("%s: ignored a write to %s", self.device_id, source)
            return
        # A write proves a central is connected.
        self._connected = True
        # A write arriving exactly at a timer's instant is handled after it.
        self._advance(now, inclusive=False)
        logger.debug("%s <- %s", self.device_id, Hex(data))
        try:
            frame = sp1.decode(data)
        except FrameError as err:
            logger.debug("%s: ignored a bad write: %s", self.device_id, err)
        else:
            self._handle(frame, now)
        self._notify_changes(now)

    def tick(self, now: float) -> None:
        """Advance timers and physics to now."""
        self._advance(now, inclusive=True)
        self._notify_changes(now)

    def next_deadline(self, now: float) -> float:
        """The next STATE notification or auto-off, or the next physics step."""
        deadline = self._physics_deadline(now)
        for t in (self._next_state, self._auto_off_at()):
            if t is not None:
                deadline = min(deadline, t)
        return deadline

    def link_up(self, now: float) -> None:
        """A central connected."""
        self._advance(now, inclusive=True)
        self._connected = True
        self._notified = self._state_key()

    def link_down(self, now: float) -> None:
        """The BLE link dropped: stop everything at once (rule 5)."""
        self._advance(now, inclusive=True)
        logger.info("%s: link down, stopping", self.device_id)
        self._connected = False
        self._apply(0, self._direction, False, now)
        self._notify_changes(now)

    # -- physical faults -------------------------------------------------------------

    def set_occupied(self, occupied: bool, now: float) -> None:
        """The pressure switch: a head rests on the pillow, or it was lifted."""
        self._advance(now, inclusive=True)
        self._occupied = occupied
        self._notify_changes(now)

    def overheat(self, now: float) -> None:
        """Force the pillow to 52 °C and apply the heat rule (rule 4)."""
        self.set_temperature(sp1.HEAT_CUT_C + 2.0, now)

    def set_temperature(self, celsius: float, now: float) -> None:
        """Force the pillow temperature (and apply rule 4 at once)."""
        self._advance(now, inclusive=True)
        self._temperature = float(celsius)
        self._check_thermal(now)
        self._notify_changes(now)

    def set_battery(self, percent: float, now: float) -> None:
        """Force the battery charge in percent (the pillow must be battery powered)."""
        if self._battery is None:
            raise ValueError(f"{self.device_id} runs on car or mains power: it has no battery")
        self._advance(now, inclusive=True)
        self._battery = max(0.0, min(100.0, float(percent)))

    # -- commands ----------------------------------------------------------------------

    def _handle(self, frame: sp1.Frame, now: float) -> None:
        cmd, payload = frame.cmd, frame.payload
        if cmd == Command.QUERY_INFO and not payload:
            info = sp1.Info(
                model_id=MODEL_ID,
                firmware_major=self.firmware_version[0],
                firmware_minor=self.firmware_version[1],
                nodes=self.nodes,
                heater=self.has_heater,
            )
            self._send(sp1.Frame(Command.INFO, info.encode()))
        elif cmd == Command.SET and len(payload) == 3:
            self._set(payload, now)
            self._send_state(now)
        elif cmd == Command.STOP and not payload:
            self._apply(0, self._direction, False, now)
            self._send_state(now)
        elif cmd == Command.QUERY_STATE and not payload:
            self._send_state(now)
        else:
            logger.debug("%s: ignored CMD 0x%02x with %d bytes", self.device_id, cmd, len(payload))

    def _set(self, payload: bytes, now: float) -> None:
        speed, direction, heat = payload
        if speed > sp1.MAX_SPEED or direction > MAX_DIRECTION or heat > 1:
            logger.debug("%s: SET out of range, not applied: %s", self.device_id, Hex(payload))
            return
        self._auto_off = False
        heat_on = heat == 1 and self.has_heater and not self._overheated
        self._apply(speed, sp1.DIRECTIONS_BY_CODE[direction], heat_on, now)

    def _state_key(self) -> tuple[int, KneadDirection, bool, int]:
        return (self._speed, self._direction, self._heat, self.flags)

    def _send(self, frame: sp1.Frame) -> None:
        if not self._connected:
            return
        data = sp1.encode(frame)
        logger.debug("%s -> %s", self.device_id, Hex(data))
        self.outbox.append((sp1.DATA_UUID, data))

    def _send_state(self, now: float) -> None:
        self._notified = self._state_key()
        self._send(sp1.Frame(Command.STATE, self.state(now).encode()))

    def _notify_changes(self, now: float) -> None:
        if self._state_key() != self._notified:
            self._send_state(now)

    # -- outputs -------------------------------------------------------------------------

    def _apply(self, speed: int, direction: KneadDirection, heat: bool, now: float) -> None:
        was_running = self.running
        if direction == KneadDirection.AUTO_REVERSE and (
            self._direction != direction or not was_running
        ):
            self._reverse_anchor = now
        self._speed = speed
        self._direction = direction
        self._heat = heat and self.has_heater
        if self.running and not was_running:
            self._run_started = now
            self._next_state = now + STATE_INTERVAL
        elif was_running and not self.running:
            self._run_started = None
            self._next_state = None
        self._record_outputs(now)

    def _record_outputs(self, now: float) -> None:
        self._set_output("speed", self._speed, now)
        self._set_output("direction", self._direction.value, now)
        if self.has_heater:
            self._set_output("heater", 1 if self._heat else 0, now)

    # -- time ------------------------------------------------------------------------------

    def _auto_off_at(self) -> float | None:
        if self._run_started is None or self.speed <= 0:
            return None
        return self._run_started + sp1.AUTO_OFF_SECONDS / self.speed

    def _advance(self, now: float, *, inclusive: bool) -> None:
        while True:
            auto_off = self._auto_off_at()
            periodic = self._next_state
            due = [t for t in (auto_off, periodic) if t is not None]
            if not due:
                break
            t = min(due)
            if t > now or (t == now and not inclusive):
                break
            self._physics_to(t)
            if t == auto_off and self._auto_off_at() == t:
                # Auto-off first: a STATE due at the same instant shows the stop.
                self._fire_auto_off(t)
            elif t == periodic and self._next_state == t:
                self._next_state = t + STATE_INTERVAL
                self._send_state(t)
        self._physics_to(now)

    def _fire_auto_off(self, when: float) -> None:
        logger.info("%s: auto-off after %d s", self.device_id, sp1.AUTO_OFF_SECONDS)
        self.auto_off_count += 1
        self._auto_off = True
        self._apply(0, self._direction, False, when)
        self._send_state(when)

    def _physics_to(self, t: float) -> None:
        for ti in substeps(self._last_physics, t, self.speed):
            self._physics_step(self._physics_dt(ti), ti)

    def _quiet_for(self) -> float:
        """Until the heater cut (or its end) could come: temperature and battery changes
        otherwise ride on the once-a-second STATE, which is a deadline of its own."""
        power = self.heater_rate if self._heat else 0.0
        threshold = sp1.HEAT_CLEAR_C if self._overheated else sp1.HEAT_CUT_C
        return time_to_cross(
            self._temperature, power, self.cooling_rate, threshold, rising=not self._overheated
        )

    def _physics_step(self, dt: float, t: float) -> None:
        power = self.heater_rate if self._heat else 0.0
        self._temperature = settle(self._temperature, power, self.cooling_rate, dt)
        if self._battery is not None:
            drain = self.knead_drain * self._speed / sp1.MAX_SPEED
            drain += self.heater_drain if self._heat else 0.0
            self._battery = max(0.0, self._battery - drain * dt)
        self._check_thermal(t)
        self._notify_changes(t)

    def _check_thermal(self, t: float) -> None:
        if self._overheated and self._temperature < sp1.HEAT_CLEAR_C:
            self._overheated = False
            logger.info("%s: cooled to %.1f °C", self.device_id, self._temperature)
        if not self._overheated and self._temperature >= sp1.HEAT_CUT_C:
            self._overheated = True
            logger.info("%s: heater cut at %.1f °C", self.device_id, self._temperature)
            self._apply(self._speed, self._direction, False, t)
