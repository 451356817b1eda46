"""Simulated VB1 belt firmware (docs/protocols/vb1-belt.md), sans-IO.

Choices where the protocol leaves room (each one keeps the wire contract):

- Command checks run in this order: unknown or device-only CMD byte -> NAK
  UNKNOWN_CMD (it is no command at all, ready or not); any command but HELLO
  before HELLO -> NAK NOT_READY; then the command's own checks. SET_HEAT on a
  belt without a heater is NAK UNSUPPORTED whatever its payload, then
  BAD_LENGTH, then OUT_OF_RANGE, then OVERHEAT.
- A HELLO with a payload is NAK BAD_LENGTH and does not make the belt ready.
  A repeated HELLO answers INFO again and leaves the outputs as they are (rule 7).
- The watchdog (rule 4) is fed by every frame with a valid CRC, even one that
  is NAKed. It trips only when something is on at expiry: then the outputs go
  to 0, EVENT 1 is sent and the STATUS watchdog flag is set. With nothing on
  there is nothing to stop, so no EVENT and no flag; and as only a host frame
  can switch something on again, EVENT 1 is sent once per silence.
- A frame that arrives at the very instant the watchdog expires still counts.
- The thermal model settles near 44 °C with the heater on (a pad that works as
  designed never overheats by itself); ``overheat``/``set_temperature``, or a
  larger ``heater_rate``, drive it past 48 °C. EVENT 2 is sent once per
  overheat episode, which lasts until the temperature is below 42 °C.
- Battery percent is reported rounded up (a fresh pack shows 100 until 1 %
  is used); "low" is a reported value below 10. EVENT 3 is sent once when the
  charge falls below 10 % and again only after it has been back at 10 % or more.
  A belt built already below 10 % sends no EVENT (nobody listens yet); its
  STATUS flag tells. The protocol defines nothing at 0 %, so the model runs on.
"""

from __future__ import annotations

import logging

from devices.capabilities import DeviceKind
from devices.links.base import Hex
from devices.protocols import vb1
from devices.protocols.vb1 import Command, EventCode, NakCode, StatusFlag
from simulator.firmware.base import Firmware
from simulator.firmware.physics import (
    AMBIENT_C,
    SETTLED_C,
    reported_percent,
    settle,
    substeps,
    time_to_cross,
    time_to_level,
)
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

LOW_BATTERY_PERCENT = 10
_MOTOR_CHANNELS = tuple(f"motor{i}" for i in range(1, 7))
"""The recording's motor channels (named once: every SET_LEVELS records them)."""
PROTOCOL_VERSION = 1


class VB1Firmware(Firmware):
    """A VB1 vibration belt: 4 or 6 motors, optional heater, serial or BLE (NUS)."""

    kind = DeviceKind.BELT

    heater_rate: float = 0.5
    """°C per simulated second the heater adds (at ambient)."""
    motor_heat_rate: float = 0.05
    """°C per simulated second every motor at 255 adds."""
    cooling_rate: float = 0.5 / 19.0
    """Newton cooling constant per simulated second: heater alone settles at 44 °C."""
    motor_drain: float = 100.0 / 7200.0
    """Battery % per simulated second with every motor at 255 (two hours)."""
    heater_drain: float = 100.0 / 5400.0
    """Battery % per simulated second with the heater on (ninety minutes)."""

    def __init__(
        self,
        device_id: str,
        *,
        motors: int = 4,
        heater: bool = True,
        serial: str = "SIM00001",
        battery: int | None = 100,
        ble: bool = False,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        now: float = 0.0,
        firmware_version: tuple[int, int] = (1, 0),
    ) -> None:
        if motors not in (4, 6):
            raise ValueError(f"a VB1 belt has 4 or 6 motors, not {motors}")
        if battery is not None and not 0 <= battery <= 100:
            raise ValueError(f"battery must be 0..100 or None (mains), not {battery}")
        super().__init__(device_id, recorder=recorder, speed=speed, now=now)
        self.motors = motors
        self.has_heater = heater
        self.serial = serial
        self.ble = ble
        self.firmware_version = firmware_version
        if ble:
            self.ble_name = f"{vb1.BLE_NAME_PREFIX}{serial}"
            self.service_uuids = (vb1.NUS_SERVICE,)
        self._target: str | None = vb1.NUS_TX if ble else None
        self._parser = vb1.FrameParser()
        self._ready = False
        self._levels = [0] * motors
        self._heat = False
        self._temperature = AMBIENT_C
        self._battery: float | None = None if battery is None else float(battery)
        self._overheated = False
        self._watchdog_flag = False
        self._low_battery_sent = self._is_low()
        self._last_frame_at = now
        self._watchdog_armed = False
        self.watchdog_tripped_count = 0
        """How many times the watchdog stopped the belt."""
        self.frames_received = 0
        """Valid frames received (any command)."""
        self._record_outputs(now)

    # -- state seen from outside ------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once a HELLO has been answered."""
        return self._ready

    @property
    def levels(self) -> tuple[int, ...]:
        """Current level of motors 1..M."""
        return tuple(self._levels)

    @property
    def heat(self) -> bool:
        """True while the heater is on."""
        return self._heat

    @property
    def temperature(self) -> float:
        """Pad temperature in °C."""
        return self._temperature

    @property
    def battery(self) -> int | None:
        """Battery percent as reported (rounded up), or None on mains."""
        if self._battery is None:
            return None
        return reported_percent(self._battery)

    @property
    def overheated(self) -> bool:
        """True from 48 °C until the belt is below 42 °C again (rule 5)."""
        return self._overheated

    @property
    def low_battery(self) -> bool:
        """True while the reported battery is below 10 %."""
        return self._is_low()

    @property
    def watchdog_flag(self) -> bool:
        """The STATUS watchdog bit: tripped since the last STATUS."""
        return self._watchdog_flag

    @property
    def anything_on(self) -> bool:
        """True while a motor runs or the heater heats."""
        return self._heat or any(self._levels)

    @property
    def settled(self) -> bool:
        """Nothing on, no overheat episode, the pad near ambient temperature."""
        return (
            not self.anything_on
            and not self._overheated
            and abs(self._temperature - AMBIENT_C) < SETTLED_C
        )

    # -- wire -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Bytes from the host, in any chunks; bad frames are dropped silently (rule 2)."""
        if source is not None and source != vb1.NUS_RX:
            logger.debug("%s: ignored a write to %s", self.device_id, source)
            return
        # A frame arriving exactly at the watchdog expiry still feeds it.
        self._advance(now, inclusive=False)
        logger.debug("%s <- %s", self.device_id, Hex(data))
        for frame in self._parser.feed(data):
            self.frames_received += 1
            self._last_frame_at = now
            self._watchdog_armed = True
            self._handle(frame, now)

    def tick(self, now: float) -> None:
        """Advance the watchdog and the physics to now."""
        self._advance(now, inclusive=True)

    def next_deadline(self, now: float) -> float:
        """The watchdog expiry when something is on, else the next physics step."""
        deadline = self._physics_deadline(now)
        expiry = self._watchdog_expiry()
        if expiry is not None:
            deadline = min(deadline, expiry)
        return deadline

    def link_up(self, now: float) -> None:
        """A new connection: forget any half frame of the previous one."""
        self._advance(now, inclusive=True)
        self._parser.reset()

    def link_down(self, now: float) -> None:
        """The link dropped: the watchdog, not the link, stops the belt (rule 4)."""
        self._advance(now, inclusive=True)
        self._parser.reset()

    # -- physical faults -------------------------------------------------------------

    def press_stop_button(self, now: float) -> None:
        """The user pressed the belt's own stop button (rule 6)."""
        self._advance(now, inclusive=True)
        logger.info("%s: stop button pressed", self.device_id)
        self._apply([0] * self.motors, False, now)
        self._send_event(EventCode.STOP_BUTTON)

    def overheat(self, now: float) -> None:
        """Force the pad to 50 °C and apply the overheat rule (rule 5)."""
        self.set_temperature(50.0, now)

    def set_temperature(self, celsius: float, now: float) -> None:
        """Force the pad temperature (and apply rule 5 at once)."""
        self._advance(now, inclusive=True)
        self._temperature = float(celsius)
        self._check_thermal(now)

    def set_battery(self, percent: float, now: float) -> None:
        """Force the battery charge in percent (the belt must be battery powered)."""
        if self._battery is None:
            raise ValueError(f"{self.device_id} runs on mains: it has no battery")
        self._advance(now, inclusive=True)
        self._battery = max(0.0, min(100.0, float(percent)))
        self._check_battery()

    # -- commands ----------------------------------------------------------------------

    def _handle(self, frame: vb1.Frame, now: float) -> None:
        cmd, payload, seq = frame.cmd, frame.payload, frame.seq
        if cmd not in vb1.HOST_COMMANDS:
            self._nak(seq, cmd, NakCode.UNKNOWN_CMD)
        elif cmd != Command.HELLO and not self._ready:
            self._nak(seq, cmd, NakCode.NOT_READY)
        elif cmd == Command.HELLO:
            if payload:
                self._nak(seq, cmd, NakCode.BAD_LENGTH)
                return
            self._ready = True
            info = vb1.Info(
                protocol=PROTOCOL_VERSION,
                firmware_major=self.firmware_version[0],
                firmware_minor=self.firmware_version[1],
                motors=self.motors,
                heater=self.has_heater,
                serial=self.serial,
            )
            self._send(vb1.Frame(seq, Command.INFO, info.encode()))
        elif cmd == Command.SET_LEVELS:
            self._set_levels(seq, payload, now)
        elif cmd == Command.SET_HEAT:
            self._set_heat(seq, payload, now)
        elif payload:
            # STOP, GET_STATUS and PING take no payload.
            self._nak(seq, cmd, NakCode.BAD_LENGTH)
        elif cmd == Command.STOP:
            self._apply([0] * self.motors, False, now)
            self._send(vb1.ack(seq, cmd))
        elif cmd == Command.GET_STATUS:
            self._send(vb1.Frame(seq, Command.STATUS, self._status().encode()))
            self._watchdog_flag = False
        else:  # PING: feeding the watchdog is all it does.
            self._send(vb1.ack(seq, cmd))

    def _set_levels(self, seq: int, payload: bytes, now: float) -> None:
        if len(payload) != self.motors:
            self._nak(seq, Command.SET_LEVELS, NakCode.BAD_LENGTH)
        elif self._overheated and any(payload):
            self._nak(seq, Command.SET_LEVELS, NakCode.OVERHEAT)
        else:
            self._apply(list(payload), self._heat, now)
            self._send(vb1.ack(seq, Command.SET_LEVELS))

    def _set_heat(self, seq: int, payload: bytes, now: float) -> None:
        if not self.has_heater:
            self._nak(seq, Command.SET_HEAT, NakCode.UNSUPPORTED)
        elif len(payload) != 1:
            self._nak(seq, Command.SET_HEAT, NakCode.BAD_LENGTH)
        elif payload[0] not in (0, 1):
            self._nak(seq, Command.SET_HEAT, NakCode.OUT_OF_RANGE)
        elif self._overheated and payload[0] == 1:
            self._nak(seq, Command.SET_HEAT, NakCode.OVERHEAT)
        else:
            self._apply(self._levels, payload[0] == 1, now)
            self._send(vb1.ack(seq, Command.SET_HEAT))

    def _status(self) -> vb1.Status:
        flags = 0
        if self._watchdog_flag:
            flags |= StatusFlag.WATCHDOG_TRIPPED
        if self._overheated:
            flags |= StatusFlag.OVERHEAT
        if self._is_low():
            flags |= StatusFlag.LOW_BATTERY
        if self._heat:
            flags |= StatusFlag.HEATER_ON
        battery = self.battery
        return vb1.Status(
            battery=0xFF if battery is None else battery,
            temperature=max(-128, min(127, round(self._temperature))),
            flags=flags,
            levels=tuple(self._levels),
        )

    def _send(self, frame: vb1.Frame) -> None:
        data = vb1.encode(frame)
        logger.debug("%s -> %s", self.device_id, Hex(data))
        self.outbox.append((self._target, data))

    def _nak(self, seq: int, cmd: int, code: NakCode) -> None:
        logger.debug("%s: NAK 0x%02x %s", self.device_id, cmd, code.name)
        self._send(vb1.nak(seq, cmd, code))

    def _send_event(self, code: EventCode) -> None:
        self._send(vb1.event(code))

    # -- outputs -------------------------------------------------------------------------

    def _apply(self, levels: list[int], heat: bool, now: float) -> None:
        self._levels = list(levels)
        self._heat = heat and self.has_heater
        self._record_outputs(now)

    def _record_outputs(self, now: float) -> None:
        for name, level in zip(_MOTOR_CHANNELS, self._levels, strict=False):
            self._set_output(name, level, now)
        if self.has_heater:
            self._set_output("heater", 1 if self._heat else 0, now)

    # -- time ------------------------------------------------------------------------------

    def _watchdog_expiry(self) -> float | None:
        if self._watchdog_armed and self.anything_on:
            return self._last_frame_at + vb1.WATCHDOG_TIMEOUT
        return None

    def _advance(self, now: float, *, inclusive: bool) -> None:
        expiry = self._watchdog_expiry()
        if expiry is not None and (expiry <= now if inclusive else expiry < now):
            self._physics_to(expiry)
            # Physics may have stopped everything (overheat) before the expiry.
            if self._watchdog_expiry() is not None:
                self._trip_watchdog(expiry)
        self._physics_to(now)

    def _trip_watchdog(self, when: float) -> None:
        self._watchdog_armed = False
        self.watchdog_tripped_count += 1
        self._watchdog_flag = True
        logger.info("%s: watchdog stop after %.3f s of silence", self.device_id, when)
        self._apply([0] * self.motors, False, when)
        self._send_event(EventCode.WATCHDOG_STOP)

    def _physics_to(self, t: float) -> None:
        for ti in substeps(self._last_physics, t, self.speed):
            self._physics_step(self._physics_dt(ti), ti)

    def _physics_step(self, dt: float, t: float) -> None:
        power, drain = self._rates()
        self._temperature = settle(self._temperature, power, self.cooling_rate, dt)
        if self._battery is not None:
            self._battery = max(0.0, self._battery - drain * dt)
            self._check_battery()
        self._check_thermal(t)

    def _rates(self) -> tuple[float, float]:
        """The heating power (°C per simulated second) and the battery drain (% per second)."""
        load = sum(self._levels) / (255.0 * self.motors)
        power = (self.heater_rate if self._heat else 0.0) + self.motor_heat_rate * load
        drain = self.motor_drain * load + (self.heater_drain if self._heat else 0.0)
        return power, drain

    def _quiet_for(self) -> float:
        """Until an overheat stop (or its end) or the low-battery EVENT could come."""
        power, drain = self._rates()
        threshold = vb1.OVERHEAT_CLEAR_C if self._overheated else vb1.OVERHEAT_STOP_C
        quiet = time_to_cross(
            self._temperature, power, self.cooling_rate, threshold, rising=not self._overheated
        )
        if self._battery is not None and not self._low_battery_sent:
            # _is_low(): the reported percent, ceil(charge - 1e-9), below LOW_BATTERY_PERCENT.
            low_at = LOW_BATTERY_PERCENT - 1 + 1e-9
            quiet = min(quiet, time_to_level(self._battery, drain, low_at))
        return quiet

    def _check_thermal(self, t: float) -> None:
        if self._overheated and self._temperature < vb1.OVERHEAT_CLEAR_C:
            self._overheated = False
            logger.info("%s: cooled to %.1f °C", self.device_id, self._temperature)
        if not self._overheated and self._temperature >= vb1.OVERHEAT_STOP_C:
            self._overheated = True
            logger.info("%s: overheat stop at %.1f °C", self.device_id, self._temperature)
            self._apply([0] * self.motors, False, t)
            self._send_event(EventCode.OVERHEAT_STOP)

    def _is_low(self) -> bool:
        battery = self.battery
        return battery is not None and battery < LOW_BATTERY_PERCENT

    def _check_battery(self) -> None:
        if self._is_low():
            if not self._low_battery_sent:
                self._low_battery_sent = True
                logger.info("%s: low battery", self.device_id)
                self._send_event(EventCode.LOW_BATTERY)
        else:
            self._low_battery_sent = False
