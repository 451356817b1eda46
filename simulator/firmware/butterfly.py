"""What the two simulated EMS butterflies share: EB1 (Coyote V3) and the Coyote V2.

Both hold a strength per channel that puts out nothing without fresh waveform data,
record ``strength_x`` and ``output_x`` in massaged's butterfly units, and drain the
battery with the output, notifying its percent on change. How strengths and
waveforms arrive, and how long each waveform lasts, stays in each model.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from devices.capabilities import DeviceKind
from devices.protocols import eb1
from simulator.firmware.base import Firmware
from simulator.firmware.physics import reported_percent, time_to_level
from simulator.recording import Recorder

EXPIRY_SLACK = 1e-9
"""Seconds of float rounding forgiven when a waveform lands on the expiry instant."""
CHANNELS = ("a", "b")
_RECORDED = tuple((f"strength_{name}", f"output_{name}") for name in CHANNELS)
"""The recording's channels of each EMS channel (named once: every B0 records them)."""


def expired(expiry: float, now: float, *, inclusive: bool) -> bool:
    """Whether waveform data running out at expiry has run out by now.

    On receive (inclusive False), data due at the expiry instant (give or take float
    rounding of "previous + 0.1") continues the output instead of opening a gap.
    """
    return expiry <= now if inclusive else expiry < now - EXPIRY_SLACK


class ButterflyFirmware(Firmware):
    """A two-channel EMS butterfly: strengths, waveform expiry, battery drain."""

    kind = DeviceKind.BUTTERFLY
    battery_uuid: ClassVar[str]

    output_drain: float = 100.0 / 10800.0
    """Battery % per simulated second with both channels at full output (three hours)."""

    def __init__(
        self,
        device_id: str,
        *,
        battery: int,
        recorder: Recorder | None,
        speed: float,
        now: float,
    ) -> None:
        if not 0 <= battery <= 100:
            raise ValueError(f"battery must be 0..100, not {battery}")
        super().__init__(device_id, recorder=recorder, speed=speed, now=now)
        self._battery = float(battery)
        self._battery_reported = self.battery

    # -- state seen from outside ------------------------------------------------

    @property
    @abc.abstractmethod
    def strengths(self) -> tuple[int, int]:
        """Strengths A and B in massaged units (0..200)."""

    @property
    def effective_outputs(self) -> tuple[int, int]:
        """What channels A and B put out now (0 without fresh, valid waveform data)."""
        return (self._effective(0), self._effective(1))

    @property
    def is_quiet(self) -> bool:
        """True when neither channel stimulates (a held strength alone puts out nothing)."""
        return self.effective_outputs == (0, 0)

    @property
    def battery(self) -> int:
        """Battery percent as reported (rounded up)."""
        return reported_percent(self._battery)

    def tick(self, now: float) -> None:
        """Run out the waveform data and advance the battery to now."""
        self._advance(now, inclusive=True)

    def set_battery(self, percent: float, now: float) -> None:
        """Force the battery charge in percent."""
        self._advance(now, inclusive=True)
        self._battery = max(0.0, min(100.0, float(percent)))
        self._report_battery()

    # -- outputs -------------------------------------------------------------------------

    @abc.abstractmethod
    def _effective(self, ch: int) -> int:
        """What channel ch puts out now."""

    def _record(self, now: float) -> None:
        strengths = self.strengths
        for ch, (strength, output) in enumerate(_RECORDED):
            self._set_output(strength, strengths[ch], now)
            self._set_output(output, self._effective(ch), now)

    def _report_battery(self) -> None:
        if self.battery != self._battery_reported:
            self._battery_reported = self.battery
            self.outbox.append((self.battery_uuid, bytes((self.battery,))))

    # -- time ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _advance(self, now: float, *, inclusive: bool) -> None:
        """Run out the waveform data due by now (see expired()), the battery up to each."""

    def _load(self) -> float:
        return (self._effective(0) + self._effective(1)) / (2.0 * eb1.MAX_STRENGTH)

    def _physics_to(self, t: float) -> None:
        if t <= self._last_physics:
            return
        # The output is constant between writes and expiries, so one step is exact.
        load = self._load()
        dt = self._physics_dt(t)
        if load > 0:
            self._battery = max(0.0, self._battery - self.output_drain * load * dt)
            self._report_battery()

    def _quiet_for(self) -> float:
        """Until the reported percent drops (the output is constant until then, or the
        next write or waveform expiry, which the endpoint wakes for anyway)."""
        # reported_percent(charge) is ceil(charge - 1e-9): one less at this charge.
        drops_at = reported_percent(self._battery) - 1 + 1e-9
        return time_to_level(self._battery, self.output_drain * self._load(), drops_at)
