"""Simulated DG-LAB Coyote 2.0 firmware (docs/protocols/coyote-v2.md), sans-IO.

What the unit does, as the vendor describes it, and our choices where it is silent:

- 0x1504 write: both strengths S (0..2047) are applied at once and kept, also
  above 1400: the unit has no limit of its own (rule 1), so a host that wrote
  more shows it in the recording. Every strength write is answered with a
  notify of the strengths now held; so is any change the host did not make
  (``turn_wheel``, a fault: the Coyote 2 has no documented wheel).
- 0x1505 / 0x1506 write: that channel's waveform [X, Y, Z] (Z up to 31, taken
  as written) for exactly 100 ms, per channel; a write at the very instant the
  last one runs out continues the output without a gap, a later one finds the
  channel already silent. Which characteristic feeds which channel is the
  codec's one constant, ``WAVEFORM_UUID_BY_CHANNEL``.
- Output per channel: ``round(strength * Z / 20)`` while its waveform is fresh
  and not silent (X or Z 0), where strength is S / 7 rounded up (massaged's
  0..200 units, so recordings read like EB1's: ``strength_a``, ``output_a``...).
- A dropped link changes nothing by itself: the waveforms run out within
  100 ms, the strengths stay (the host sets them to 0 at its next connect).
- The advertisement carries the local name only, no service UUID, as the real
  unit's; the battery drains with the output and is notified on change.
"""

from __future__ import annotations

import logging

from devices.errors import FrameError
from devices.links.base import Hex
from devices.protocols import coyote_v2 as cv2
from simulator.firmware.butterfly import ButterflyFirmware, expired
from simulator.recording import Recorder

logger = logging.getLogger(__name__)


def _raw_strengths(a: int, b: int) -> bytes:
    """The strengths as the unit reports them (not refused past 1400: it has no limit)."""
    return ((a << 11) | b).to_bytes(3, "little")


class CoyoteV2Firmware(ButterflyFirmware):
    """A Coyote V2: strengths kept, each channel's waveform lasts 100 ms."""

    ble_model = "coyote_v2"
    advertises_services = False
    battery_uuid = cv2.BATTERY_UUID

    def __init__(
        self,
        device_id: str,
        *,
        name: str = cv2.BLE_NAME,
        battery: int = 100,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        now: float = 0.0,
    ) -> None:
        super().__init__(device_id, battery=battery, recorder=recorder, speed=speed, now=now)
        self.ble_name = name
        self.service_uuids = ()
        self._wire = [0, 0]
        self._waves: list[cv2.Waveform | None] = [None, None]
        self._expiry: list[float | None] = [None, None]
        self.strength_writes = 0
        self.waveform_writes = [0, 0]
        self.max_wire_strength = 0
        """The highest S ever held (a host past 1400 shows here)."""
        self.max_z = 0
        """The highest pulse width Z ever written (a host past 20 shows here)."""
        self._record(now)

    # -- state seen from outside ------------------------------------------------

    @property
    def wire_strengths(self) -> tuple[int, int]:
        """S of channels A and B as held (0..2047)."""
        return (self._wire[0], self._wire[1])

    @property
    def strengths(self) -> tuple[int, int]:
        """Strengths A and B in massaged units (S / 7 rounded up)."""
        return (cv2.from_wire_strength(self._wire[0]), cv2.from_wire_strength(self._wire[1]))

    @property
    def waveforms(self) -> tuple[cv2.Waveform | None, cv2.Waveform | None]:
        """The waveform each channel plays now (None once it ran out)."""
        return (self._waves[0], self._waves[1])

    # -- wire -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """A write to 0x1504 (strengths) or to a channel's waveform characteristic."""
        self._advance(now, inclusive=False)
        source = (source or "").lower()
        logger.debug("%s <- %s %s", self.device_id, source, Hex(data))
        try:
            if source == cv2.STRENGTH_UUID:
                self._on_strengths(cv2.decode_strengths(data), now)
            elif source in cv2.WAVEFORM_UUID_BY_CHANNEL:
                channel = cv2.WAVEFORM_UUID_BY_CHANNEL.index(source)
                self._on_waveform(channel, cv2.decode_waveform(data), now)
            else:
                logger.debug("%s: ignored a write to %s", self.device_id, source)
        except FrameError as err:
            logger.debug("%s: ignored a bad write: %s", self.device_id, err)

    def next_deadline(self, now: float) -> float:
        """The instant a waveform runs out, or the next physics step."""
        deadline = self._physics_deadline(now)
        for expiry in self._expiry:
            if expiry is not None:
                deadline = min(deadline, expiry)
        return deadline

    def read_attribute(self, uuid: str, now: float) -> bytes:
        """GATT read: battery, strengths, or the last waveform written to a channel."""
        self._advance(now, inclusive=True)
        uuid = uuid.lower()
        if uuid == cv2.BATTERY_UUID:
            return bytes((self.battery,))
        if uuid == cv2.STRENGTH_UUID:
            return _raw_strengths(*self._wire)
        if uuid in cv2.WAVEFORM_UUID_BY_CHANNEL:
            wave = self._waves[cv2.WAVEFORM_UUID_BY_CHANNEL.index(uuid)]
            return bytes(3) if wave is None else cv2.encode_waveform(wave)
        return super().read_attribute(uuid, now)

    # -- faults ----------------------------------------------------------------------

    def turn_wheel(self, a: int | None, b: int | None, now: float) -> None:
        """A strength change the host did not write (massaged units; None leaves one).

        The Coyote 2 has no documented wheel; this stands for whatever else could change
        it (another app, a firmware fault). The unit notifies it like any change.
        """
        self._advance(now, inclusive=True)
        for ch, value in enumerate((a, b)):
            if value is not None:
                self._wire[ch] = max(0, min(value * cv2.WIRE_STEP, cv2.FIELD_MAX))
        self._record(now)
        self._notify_strengths()

    # -- messages ------------------------------------------------------------------------

    def _on_strengths(self, values: tuple[int, int], now: float) -> None:
        self.strength_writes += 1
        self._wire = [values[0], values[1]]
        self.max_wire_strength = max(self.max_wire_strength, *values)
        self._record(now)
        self._notify_strengths()

    def _on_waveform(self, channel: int, wave: cv2.Waveform, now: float) -> None:
        self.waveform_writes[channel] += 1
        self.max_z = max(self.max_z, wave.z)
        self._waves[channel] = wave
        self._expiry[channel] = now + cv2.WAVEFORM_EXPIRY
        self._record(now)

    def _notify_strengths(self) -> None:
        self.outbox.append((cv2.STRENGTH_UUID, _raw_strengths(*self._wire)))

    # -- outputs -------------------------------------------------------------------------

    def _effective(self, ch: int) -> int:
        wave = self._waves[ch]
        if wave is None or wave.is_silent:
            return 0
        return round(cv2.from_wire_strength(self._wire[ch]) * wave.z / cv2.MAX_Z)

    # -- time ------------------------------------------------------------------------------

    def _advance(self, now: float, *, inclusive: bool) -> None:
        # Run out the waveforms in the order they expire, with the battery up to each.
        while True:
            due = [
                (expiry, ch)
                for ch, expiry in enumerate(self._expiry)
                if expiry is not None and expired(expiry, now, inclusive=inclusive)
            ]
            if not due:
                break
            expiry, ch = min(due)
            self._physics_to(expiry)
            self._waves[ch] = None
            self._expiry[ch] = None
            self._record(expiry)
        self._physics_to(now)
