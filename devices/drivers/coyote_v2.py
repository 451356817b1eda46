"""Driver for the DG-LAB Coyote 2.0, a second butterfly model (docs/protocols/coyote-v2.md).

One task, the pump, does every write that puts something out: strengths on
0x1504 (ramped, capped), then each active channel's waveform on its own
characteristic. The waveform writes are the keepalive (daemon rule 4): a unit
outputs nothing once 100 ms pass without one, so they go every WAVE_INTERVAL
while the session's lease runs, and never otherwise.

There is no soft limit on the unit (rule 1): the limits a session gives the
driver (``soft_limits``, the same name and calls as EB1's, which writes them as
BF) are held here and applied before anything is encoded, and the codec refuses
a strength past 200 (S 1400) or a pulse width past Z 20 (rule 3) on top.

Rule 2's "fresh ramp from zero after a gap in the waveform writes" is kept per
channel: a channel whose waveform ran out (no write for 100 ms: a stall, or the
program asked for intensity 0) while it held a strength is set to 0 before it
may be fed again, then ramps up from 0. So a channel never holds a strength it
is not being fed at, and never resumes at a held level.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from devices.capabilities import Capabilities
from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT
from devices.drivers.ems import EmsButterflyDriver, checked_soft_limits
from devices.errors import FrameError, IdentificationError, LinkLostError
from devices.events import DeviceFault, StatusReport
from devices.links.base import DEFAULT_READ_TIMEOUT, Hex, Link
from devices.outputs import ButterflyOutput, EmsChannelOutput, Output
from devices.protocols import coyote_v2 as cv2

logger = logging.getLogger(__name__)

WAVE_INTERVAL = 0.090
"""Seconds between two waveform writes of an active channel. Each written waveform lasts
exactly 100 ms on the unit; writes every 100 ms would arrive a fraction late on every
timer jitter and leave the channel silent for that fraction (then rule 2 would even call
it a gap). 90 ms keeps the output continuous with 10 ms to spare, as EB1's B0s."""
STOP_TIMEOUT = 1.5
"""Seconds close() gives the final zeroing write."""
ANSWERS_KEPT = 16
"""Strength writes remembered while their notify is on its way (a delayed link)."""


class CoyoteV2Driver(EmsButterflyDriver):
    """A Coyote V2: host-side caps, ramped strengths, waveform every 90 ms as the keepalive."""

    model = cv2.MODEL
    described = "a Coyote V2"
    battery_uuid = cv2.BATTERY_UUID

    def __init__(
        self,
        link: Link,
        *,
        name: str | None = None,
        soft_limits: tuple[int, int] = (cv2.MAX_STRENGTH, cv2.MAX_STRENGTH),
        max_raise_per_100ms: int = cv2.MAX_RAISE_PER_100MS,
        wave_interval: float = WAVE_INTERVAL,
    ) -> None:
        # soft_limits: the session's caps per channel, held by the driver: the unit has
        # none (rule 1).
        super().__init__(
            link,
            name=name,
            write_target=cv2.STRENGTH_UUID,
            soft_limits=soft_limits,
            max_raise_per_100ms=max_raise_per_100ms,
            interval=wave_interval,
        )
        if not 0 < wave_interval < cv2.WAVEFORM_EXPIRY:
            raise ValueError(f"wave_interval must be under {cv2.WAVEFORM_EXPIRY} s")
        self._level = [0, 0]
        """Per channel, the strength (massaged units) the unit holds as far as we know."""
        self._reported = [0, 0]
        """Per channel, the strength the unit last said it holds (notify or read)."""
        # The ceilings (EmsButterflyDriver._ceiling) are the lower value of a mismatch.
        self._fed_at = [float("-inf"), float("-inf")]
        """Per channel, the last waveform write (or the raise from 0 that starts one)."""
        self._wire_wave: list[cv2.Waveform | None] = [None, None]
        """Per channel, the waveform last written while it held a strength."""
        self._answers: deque[tuple[int, int]] = deque(maxlen=ANSWERS_KEPT)
        """Wire strengths written whose notify has not come yet, oldest first."""
        self.strength_writes = 0
        self.waveform_writes = 0

    # -- settings (the same calls as EB1's, held on the host) -----------------------

    async def set_soft_limits(self, limits: tuple[int, int]) -> None:
        """New caps, in force at once: a channel above one falls at the next write."""
        self.soft_limits = checked_soft_limits(limits)
        logger.info("%s: caps now %s (held on the host)", self.name, self.soft_limits)
        self._wake.set()

    # -- state ----------------------------------------------------------------

    @property
    def strengths(self) -> tuple[int, int]:
        """Strengths A and B (0..200) the unit holds as far as the driver knows."""
        return (self._level[0], self._level[1])

    def reset_session(self) -> None:
        """A new session: forget the ceilings of the last one."""
        self._ceiling = [None, None]
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Capabilities:
        """Open the link, read what the unit holds, set both strengths to 0."""
        self._connected = False
        self._target = None
        self._wire_wave = [None, None]
        self._fed_at = [float("-inf"), float("-inf")]
        self._answers.clear()

        async def handshake() -> None:
            held = await self._read_strengths()
            self._level = [cv2.from_wire_strength(v) for v in held]
            await self._write_strengths((0, 0), generation=None)
            self._tasks.start(self._pump(), "coyote-pump")

        caps = await self._connect_with(timeout, handshake)
        logger.info("%s: Coyote V2, caps %s held on the host", self.name, self.soft_limits)
        return caps

    async def _read_strengths(self) -> tuple[int, int]:
        data = await self.link.read(cv2.STRENGTH_UUID, timeout=DEFAULT_READ_TIMEOUT)
        try:
            held = cv2.decode_strengths(data)
        except FrameError as exc:
            raise IdentificationError(f"{self.name}: not a Coyote V2: {exc}") from exc
        self._reported = [cv2.from_wire_strength(v) for v in held]
        return held

    stop_timeout = STOP_TIMEOUT

    async def _stop_on_close(self) -> None:
        self._target = None
        await self._write_strengths((0, 0), generation=None)

    def _forget_outputs(self) -> None:
        self._target = None

    def _forget_held_outputs(self) -> None:
        # A gap in service: the pump, woken next, writes 0 before anything else.
        self._target = None

    # -- outputs --------------------------------------------------------------

    async def apply(self, output: Output) -> None:
        """Record the target; the pump ramps towards it and feeds it under the lease."""
        output = self._checked_output(output)
        self._stamp(output)  # a request handled after a gap was made before it: dropped
        if output != self._target:
            self._target = output
            self._wake.set()

    async def stop(self) -> None:
        """Both strengths to 0 (00 00 00) first, then no further waveform; ends the lease."""
        self.revoke_lease()
        self._require_connected()
        self._target = None
        await self._write_strengths((0, 0), generation=None)

    async def status(self) -> StatusReport:
        """Battery and strengths read from the unit; output as fed now."""
        self._require_connected()
        await self._read_battery()
        # Not under the write lock: a slow read must never hold back the keepalive.
        held = await self._read_strengths()
        strengths = [cv2.from_wire_strength(v) for v in held]
        outputs = {"strength_a": strengths[0], "strength_b": strengths[1]}
        loop_now = asyncio.get_running_loop().time()
        for i, name in enumerate("ab"):
            wave = self._wire_wave[i]
            fed = wave is not None and loop_now <= self._fed_at[i] + cv2.WAVEFORM_EXPIRY
            outputs[f"output_{name}"] = (
                round(strengths[i] * wave.z / cv2.MAX_Z) if fed and wave is not None else 0
            )
        return self._status_report(outputs, writing=any(w is not None for w in self._wire_wave))

    # -- what may be put out now ---------------------------------------------------

    def _wave(self, ch: EmsChannelOutput) -> cv2.Waveform | None:
        return cv2.channel_waveform(ch.strength, ch.frequency, ch.intensity)

    def _feeding(self) -> ButterflyOutput | None:
        """The target, while the lease runs (else None: nothing may be fed)."""
        if self._target is None or not self.lease_valid:
            return None
        return self._target

    def _allowed(self, i: int) -> int:
        """The most channel i may hold now: target, cap, ceiling; 0 when it is not fed."""
        target = self._feeding()
        if target is None:
            return 0
        ch = (target.a, target.b)[i]
        if self._wave(ch) is None:
            return 0
        allowed = min(ch.strength, self.soft_limits[i])
        ceiling = self._ceiling[i]
        return allowed if ceiling is None else min(allowed, ceiling)

    # -- writes -------------------------------------------------------------------

    async def _write_strengths(self, values: tuple[int, int], *, generation: int | None) -> bool:
        """Write both strengths (massaged units); False when a raise is no longer allowed.

        generation: the lease generation of a write that raises (None: one that only
        lowers, always safe). Checked again under the lock, right before the bytes go.
        """
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            rises = [max(0, v - level) for v, level in zip(values, self._level, strict=True)]
            for i, rise in enumerate(rises):
                if rise and (values[i] > self._allowed(i) or rise > self._raise_allowance(i, now)):
                    return False  # the target, a cap or the lease changed meanwhile
            wire = (cv2.to_wire_strength(values[0]), cv2.to_wire_strength(values[1]))
            data = cv2.encode_strengths(*wire)
            for i, rise in enumerate(rises):
                if rise and self._level[i] == 0:
                    self._fed_at[i] = now  # its first waveform is due now
                if values[i] == 0:
                    self._wire_wave[i] = None
            self._level = [values[0], values[1]]
            self._answers.append(wire)
            try:
                await self._write(data, target=cv2.STRENGTH_UUID, generation=generation)
            finally:
                # Rule 2 counts from when the raise left, not from when it was planned: a
                # write held up (a busy host, a slow link) must not let the next step
                # follow it sooner than 100 ms on the wire. Counted even if the write
                # failed: it may have gone out.
                sent_at = loop.time()
                for i, rise in enumerate(rises):
                    if rise:
                        self._ramp.spend(i, rise, sent_at)
            self.strength_writes += 1
            return True

    async def _write_waveform(self, i: int, wave: cv2.Waveform, generation: int) -> bool:
        """Feed channel i one waveform; False when it may no longer be fed."""
        async with self._write_lock:
            target = self._feeding()
            if (
                target is None
                or self._level[i] == 0
                or self._level[i] > self._allowed(i)
                or self._wave((target.a, target.b)[i]) != wave
            ):
                return False  # stopped, lowered or changed meanwhile: the pump looks again
            data = cv2.encode_waveform(wave)  # refuses Z above 20 (rule 3)
            self._fed_at[i] = asyncio.get_running_loop().time()
            self._wire_wave[i] = wave
            await self._write(data, target=cv2.WAVEFORM_UUID_BY_CHANNEL[i], generation=generation)
            self.waveform_writes += 1
            return True

    # -- the pump -------------------------------------------------------------

    async def _tick(self) -> float | None:
        """Do the write due now, if any; return when to look again (None: only when woken)."""
        loop = asyncio.get_running_loop()
        self.check_lease()  # a lapsed lease is a gap: the target is forgotten, 0 follows
        generation = self._lease_gen
        if self._target is not None and not self.lease_valid:
            logger.info("%s: lease ended, strengths to 0", self.name)
            self._target = None
        target = self._feeding()
        now = loop.time()
        plan = list(self._level)
        held_until: float | None = None
        for i in range(2):
            allowed = self._allowed(i)
            level = self._level[i]
            starved = level > 0 and now > self._fed_at[i] + cv2.WAVEFORM_EXPIRY
            if allowed == 0 or starved:
                # Not fed, or its waveform ran out: 0 now, a fresh ramp later (rule 2).
                plan[i] = 0
            elif allowed < level:
                plan[i] = allowed
            elif allowed > level:
                allowance = self._raise_allowance(i, now)
                if allowance == 0:
                    frees = self._ramp.frees_at(i)
                    held_until = frees if held_until is None else min(held_until, frees)
                plan[i] = min(allowed, level + allowance)
        if plan != self._level:
            raising = any(p > level for p, level in zip(plan, self._level, strict=True))
            await self._write_strengths(
                (plan[0], plan[1]), generation=generation if raising else None
            )
            return loop.time()  # the waveforms (or the next step) are due at once
        if target is None:
            return None
        deadline = self._lease_until
        if held_until is not None:
            deadline = min(deadline, held_until)
        for i, ch in enumerate((target.a, target.b)):
            wave = self._wave(ch)
            if wave is None or self._level[i] == 0:
                continue
            due_at = self._fed_at[i] + self._interval
            if wave != self._wire_wave[i] or now >= due_at:
                await self._write_waveform(i, wave, generation)
                return loop.time()
            deadline = min(deadline, due_at)
        return deadline

    # -- receiving ------------------------------------------------------------

    def _on_receive(self, source: str, data: bytes) -> None:
        source = source.lower()
        if self._on_battery(source, data):
            return
        if source != cv2.STRENGTH_UUID:
            logger.debug("%s: ignored a notification on %s", self.name, source)
            return
        try:
            held = cv2.decode_strengths(data)
        except FrameError as exc:
            logger.debug("%s: ignored a bad notification %s: %s", self.name, Hex(data), exc)
            return
        logger.debug("%s <- strengths %s", self.name, held)
        self._on_strengths(held)

    def _on_strengths(self, held: tuple[int, int]) -> None:
        """Rule 5: the unit's answer; a value we did not write is a fault, made safe here."""
        self._reported = [cv2.from_wire_strength(v) for v in held]
        if held in self._answers:
            # The answer to one of our writes (the ones before it are answered too).
            while self._answers and self._answers.popleft() != held:
                pass
            return
        written = self._answers[-1] if self._answers else None
        if written is None:
            written = (
                cv2.to_wire_strength(self._level[0]),
                cv2.to_wire_strength(self._level[1]),
            )
            if held == written:
                return
        self._answers.clear()
        for i in range(2):
            if held[i] == written[i]:
                continue
            # Never raise past the lower of what we wrote and what it holds (floor: the
            # unit's value between two steps counts as the step below it).
            lower = min(written[i], held[i]) // cv2.WIRE_STEP
            ceiling = self._ceiling[i]
            self._ceiling[i] = lower if ceiling is None else min(ceiling, lower)
            # What it holds now, rounded up: the pump lowers it to the ceiling if above.
            self._level[i] = cv2.from_wire_strength(held[i])
        reason = f"the unit holds S {held}, not the S {written} written"
        logger.warning("%s: %s", self.name, reason)
        self._wake.set()
        if self._connected:
            self._emit(
                DeviceFault(
                    self.name,
                    self.kind,
                    reason,
                    ceiling_a=self._ceiling[0],
                    ceiling_b=self._ceiling[1],
                )
            )

    def _on_lost(self, error: LinkLostError) -> None:
        self._target = None
        self._wire_wave = [None, None]
        self._answers.clear()
        self._wake.set()
