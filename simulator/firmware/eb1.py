"""Simulated EB1 butterfly firmware (DG-LAB Coyote V3; docs/protocols/eb1-butterfly.md), sans-IO.

Choices where the protocol leaves room; the vendor's document
(DG-LAB-OPENSOURCE ``coyote/v3/README_V3.md``) decides where it speaks:

- B1 after a B0: the vendor says a B0 with sequence 0 gets no B1 even when it
  changes a strength (its example No.2), and a B0 with a sequence other than 0
  that modifies a strength is answered with B1 carrying that sequence. This
  firmware answers B1 to every sequenced B0 that asks for a strength change
  (either mode other than "no change"), also when clamping leaves the
  strength where it was: the host is told to wait for that B1 before its next
  change, and daemon rule 1 sends a sequenced "set both to 0" to a unit that
  is usually at 0 already, so a missing B1 would stall it. A sequenced B0 with
  both modes "no change" asks for nothing and gets no B1.
- Any other strength change (the wheel, or a BF lowering a soft limit below
  the strength in force) sends B1 with sequence 0, as the vendor's B1 text
  says ("otherwise the sequence number is 0").
- A BF answers BE first, then the B1 of any clamp it caused. Balances are
  stored and reported but do not shape the modelled output.
- Output per channel is ``round(strength * mean(the B0's four intensities) /
  100)`` for 100 ms after the B0 that carried valid waveform data for it; a
  B0 with invalid data silences that channel at once. The 100 ms run out at
  exactly ``B0 time + 0.1`` (``next_deadline`` returns that instant); a B0
  received at that very instant continues the output without a gap, but one
  that comes later, even by a millisecond, finds the channel already at 0
  (the recording shows that gap: the host was late).
- ``is_quiet`` looks at ``output_a``/``output_b`` only: a strength held
  without waveform data stimulates nothing.
- The battery drains with the output (simulated time) and is notified on the
  battery characteristic whenever its percent changes.
"""

from __future__ import annotations

import logging

from devices.errors import FrameError
from devices.links.base import Hex
from devices.protocols import eb1
from simulator.firmware.butterfly import ButterflyFirmware, expired
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

DEFAULT_BALANCE = 128


class EB1Firmware(ButterflyFirmware):
    """An EB1 butterfly: two EMS channels driven by B0 every 100 ms, on BLE."""

    battery_uuid = eb1.BATTERY_UUID

    def __init__(
        self,
        device_id: str,
        *,
        serial: str = "47L121000",
        battery: int = 100,
        soft_limits: tuple[int, int] = (eb1.MAX_STRENGTH, eb1.MAX_STRENGTH),
        name: str | None = None,
        advertise_services: bool = True,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        now: float = 0.0,
    ) -> None:
        super().__init__(device_id, battery=battery, recorder=recorder, speed=speed, now=now)
        if any(not 0 <= limit <= eb1.MAX_STRENGTH for limit in soft_limits):
            raise ValueError(f"soft limits must be 0..{eb1.MAX_STRENGTH}: {soft_limits}")
        self.serial = serial
        # A real Coyote V3 says "47L121000" and advertises no service (name=...,
        # advertise_services=False); the EB1 of the protocol document says "EB1-<serial>".
        self.ble_name = name if name is not None else f"{eb1.BLE_NAME_PREFIX}{serial}"
        self.service_uuids = (eb1.SERVICE_UUID, eb1.BATTERY_SERVICE_UUID)
        self.advertises_services = advertise_services
        self._strength = [0, 0]
        self._limits = [soft_limits[0], soft_limits[1]]
        self._balances = [DEFAULT_BALANCE] * 4
        self._waves: list[eb1.Wave | None] = [None, None]
        self._wave_expiry: float | None = None
        self.b0_count = 0
        """B0 messages received."""
        self._record(now)

    # -- state seen from outside ------------------------------------------------

    @property
    def strengths(self) -> tuple[int, int]:
        """Strength of channels A and B as held (0..200)."""
        return (self._strength[0], self._strength[1])

    @property
    def soft_limits(self) -> tuple[int, int]:
        """Soft limits of channels A and B."""
        return (self._limits[0], self._limits[1])

    @property
    def balances(self) -> tuple[int, int, int, int]:
        """Frequency balance A, B and intensity balance A, B."""
        return (self._balances[0], self._balances[1], self._balances[2], self._balances[3])

    @property
    def waveform_expiry(self) -> float | None:
        """When the waveform data of the last B0 runs out (None once it has)."""
        return self._wave_expiry

    # -- wire -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """One write to 0x150A: a B0 or a BF; anything else is ignored."""
        if source is not None and source != eb1.WRITE_UUID:
            logger.debug("%s: ignored a write to %s", self.device_id, source)
            return
        # A B0 arriving exactly when the previous one runs out continues the output.
        self._advance(now, inclusive=False)
        logger.debug("%s <- %s", self.device_id, Hex(data))
        try:
            message = eb1.decode(data)
        except FrameError as err:
            logger.debug("%s: ignored a bad write: %s", self.device_id, err)
            return
        if isinstance(message, eb1.B0):
            self._on_b0(message, now)
        elif isinstance(message, eb1.BF) and not isinstance(message, eb1.BE):
            self._on_bf(message, now)
        else:
            logger.debug("%s: ignored a device message from the host", self.device_id)

    def next_deadline(self, now: float) -> float:
        """The instant the waveform data runs out, or the next physics step."""
        deadline = self._physics_deadline(now)
        if self._wave_expiry is not None:
            deadline = min(deadline, self._wave_expiry)
        return deadline

    def read_attribute(self, uuid: str, now: float) -> bytes:
        """GATT read: the battery characteristic, one byte of percent."""
        if uuid != eb1.BATTERY_UUID:
            return super().read_attribute(uuid, now)
        self._advance(now, inclusive=True)
        return bytes((self.battery,))

    # -- the unit's own controls and faults ------------------------------------------

    def turn_wheel(self, a: int | None, b: int | None, now: float) -> None:
        """The user sets strengths on the unit's wheel (None leaves a channel); B1 with seq 0."""
        self._advance(now, inclusive=True)
        before = self.strengths
        for ch, value in enumerate((a, b)):
            if value is not None:
                self._strength[ch] = max(0, min(value, eb1.MAX_STRENGTH, self._limits[ch]))
        self._record(now)
        if self.strengths != before:
            self._send_b1(0)

    # -- messages ------------------------------------------------------------------------

    def _on_b0(self, msg: eb1.B0, now: float) -> None:
        self.b0_count += 1
        modes = (msg.mode_a, msg.mode_b)
        values = (msg.value_a, msg.value_b)
        for ch in range(2):
            self._strength[ch] = eb1.apply_strength(
                self._strength[ch], modes[ch], values[ch], self._limits[ch]
            )
        self._waves = [
            msg.intensity_a if eb1.wave_valid(msg.freq_a, msg.intensity_a) else None,
            msg.intensity_b if eb1.wave_valid(msg.freq_b, msg.intensity_b) else None,
        ]
        self._wave_expiry = now + eb1.WAVEFORM_EXPIRY
        self._record(now)
        if msg.seq != 0 and msg.changes_strength:
            self._send_b1(msg.seq)

    def _on_bf(self, msg: eb1.BF, now: float) -> None:
        for ch, limit in enumerate((msg.limit_a, msg.limit_b)):
            # Out of range leaves the limit unchanged (vendor).
            if 0 <= limit <= eb1.MAX_STRENGTH:
                self._limits[ch] = limit
        self._balances = [
            msg.freq_balance_a,
            msg.freq_balance_b,
            msg.intensity_balance_a,
            msg.intensity_balance_b,
        ]
        self._send(eb1.BE(self._limits[0], self._limits[1], *self._balances))
        before = self.strengths
        # The strength never exceeds the soft limit in force.
        self._strength = [
            min(s, limit) for s, limit in zip(self._strength, self._limits, strict=True)
        ]
        self._record(now)
        if self.strengths != before:
            self._send_b1(0)

    def _send_b1(self, seq: int) -> None:
        self._send(eb1.B1(seq, self._strength[0], self._strength[1]))

    def _send(self, message: eb1.Message) -> None:
        data = eb1.encode(message)
        logger.debug("%s -> %s", self.device_id, Hex(data))
        self.outbox.append((eb1.NOTIFY_UUID, data))

    # -- outputs -------------------------------------------------------------------------

    def _effective(self, ch: int) -> int:
        wave = self._waves[ch]
        if wave is None:
            return 0
        return round(self._strength[ch] * (sum(wave) / len(wave)) / 100)

    # -- time ------------------------------------------------------------------------------

    def _advance(self, now: float, *, inclusive: bool) -> None:
        expiry = self._wave_expiry
        if expiry is not None and expired(expiry, now, inclusive=inclusive):
            self._physics_to(expiry)
            self._waves = [None, None]
            self._wave_expiry = None
            self._record(expiry)
        self._physics_to(now)
