"""Driver for the EB1 EMS butterfly (DG-LAB Coyote V3; docs/protocols/eb1-butterfly.md).

One task, the pump, writes every B0 while a session output is set and the lease
runs, each carrying 100 ms of waveform and at most one strength change: at once
when there is something new to send (a new strength or waveform, a change that
waited for its B1), otherwise every B0_INTERVAL after the last B0. With nothing to
send the pump sleeps until woken.

A strength change goes on the wire relative to the strength the unit last reported
("increase by" / "decrease by"), and only a zero as "set to". The user may turn the
wheel while a B0 is on its way (the host writes before the wheel's B1 reaches it): a
raise written as "set to 65" would then land after the user turned 60 down to 10 and
bring back 65 for a round trip; written as "increase by 5" it lands at 15, one ramp step
above the user's word, and a lowering lands below it. The price: a raise resent for a
lost B1 whose first write did land raises twice. Resends come B1_TIMEOUT apart, so that
stays within rule 2 (5 per 100 ms), the unit's soft limit still caps it, and the B1 it
brings has the driver lower the channel at once. We take one ramp step too many over a
target after a lost answer rather than a return to the level the user turned away from.
A raise still unanswered when the wheel's word arrives is never resent as a raise (see
EB1Driver._on_wheel): the word plus one step is the most a crossing can cost.

How we read the protocol's "when no B0 has arrived for 100 ms, the channel outputs
nothing": every B0 restarts the unit's 100 ms waveform timer, and the unit plays the
newest B0's four 25 ms pairs from its arrival. A B0 written early therefore replaces
what was left of the previous one, the output never has a gap as long as B0s come at
least every 100 ms, and a dead daemon's output still ends 100 ms after its last B0
(rule 3). The simulator's firmware model (simulator/firmware/eb1.py) behaves so; the
vendor's document does not say otherwise, but only the hardware can confirm it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from devices.capabilities import Capabilities
from devices.drivers._request import RequestTracker
from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT
from devices.drivers.ems import EmsButterflyDriver, checked_soft_limits
from devices.errors import (
    DeviceTimeoutError,
    FrameError,
    IdentificationError,
    LinkLostError,
    SafetyError,
)
from devices.events import EmsWheelChanged, StatusReport
from devices.links.base import Hex, Link
from devices.outputs import ButterflyOutput, EmsChannelOutput, Output
from devices.protocols import eb1

logger = logging.getLogger(__name__)

B1_TIMEOUT = 0.300
"""Seconds to wait for the B1 of a strength change before resending it."""
MAX_RETRIES = 3
"""Resends of an unanswered strength change (or BF) before the link counts as lost."""
STOP_TIMEOUT = 1.5
"""Seconds close() gives the final zeroing B0 to be answered."""

_SILENT = (eb1.SILENT_FREQUENCY, eb1.SILENT_INTENSITY)
_SET, _KEEP = eb1.StrengthMode.SET, eb1.StrengthMode.NO_CHANGE
_UP, _DOWN = eb1.StrengthMode.INCREASE, eb1.StrengthMode.DECREASE

_Step = tuple[eb1.StrengthMode, int]
"""One channel's strength field in a B0: its mode and value."""
_UNCHANGED: tuple[_Step, _Step] = ((_KEEP, 0), (_KEEP, 0))


def _steps(values: tuple[int | None, int | None], current: list[int]) -> tuple[_Step, _Step]:
    """How a change to values goes on the wire from the strengths the unit last reported:
    a zero as "set to 0", anything else relative (see the module's docstring)."""
    steps: list[_Step] = []
    for value, now in zip(values, current, strict=True):
        if value is None or (value == now and value != 0):
            steps.append((_KEEP, 0))
        elif value == 0:
            steps.append((_SET, 0))
        elif value > now:
            steps.append((_UP, value - now))
        else:
            steps.append((_DOWN, now - value))
    return steps[0], steps[1]


_Waves = tuple[tuple[eb1.Wave, eb1.Wave], tuple[eb1.Wave, eb1.Wave]]
"""The waveform of both channels in one B0: (frequencies, intensities) of A, then of B."""


def _wave(ch: EmsChannelOutput) -> tuple[eb1.Wave, eb1.Wave]:
    """One channel's 100 ms of waveform: its frequency and intensity four times, or silence."""
    if ch.is_zero:
        return _SILENT
    return (ch.frequency,) * 4, (ch.intensity,) * 4


def _taken_back(step: _Step) -> _Step:
    """A raise undone ("decrease by" its amount); any other step as it was."""
    mode, value = step
    return (_DOWN, value) if mode == _UP else step


@dataclass(slots=True)
class _Change:
    """A strength change on its way: its sequence number and how it changes the strengths."""

    seq: int
    steps: tuple[_Step, _Step]
    """How the B0 changes each channel: the same bytes when resent (but see
    EB1Driver._on_wheel)."""
    sent_at: float
    misses: int = 0
    done: asyncio.Future[eb1.B1] | None = field(default=None)
    generation: int | None = None
    """The lease generation of a change towards a session target (None: a zeroing one)."""


B0_INTERVAL = 0.090
"""Seconds from one B0 to the next when nothing new is to be sent. Each B0 carries exactly
100 ms of waveform, so B0s sent every 100 ms arrive a fraction late half the time under
timer jitter, leaving a gap in the output; sending them a little early keeps the output
continuous (rule 3 asks for one at least every 100 ms). The ramp limit (rule 2) is counted
per elapsed time, not per B0."""

MIN_B0_GAP = 0.010
"""Seconds between two B0s carrying something new at the least, except a zeroing one
(stop, pause, lease end), which never waits. A write without response leaves at the
next BLE connection event at the earliest, and connection intervals are 7.5 ms at the
shortest (15 to 50 ms as Linux centrals usually negotiate): B0s closer than that would
only queue in the radio, each replacing the previous one's waveform before the unit
could play it. 10 ms keeps a change's delay to one connection event while capping a
burst of changes at 100 B0s a second (plus the cadence) instead of flooding the link."""


class EB1Driver(EmsButterflyDriver):
    """An EB1 butterfly: soft limits first, B0 every 100 ms, ramps, the wheel's word."""

    model = "EB1"
    described = "an EB1 butterfly"
    battery_uuid = eb1.BATTERY_UUID
    pump_label = "B0 pump"

    def __init__(
        self,
        link: Link,
        *,
        name: str | None = None,
        soft_limits: tuple[int, int] = (eb1.MAX_STRENGTH, eb1.MAX_STRENGTH),
        max_raise_per_100ms: int = eb1.MAX_RAISE_PER_B0,
        answer_timeout: float = B1_TIMEOUT,
        max_retries: int = MAX_RETRIES,
        b0_interval: float = B0_INTERVAL,
    ) -> None:
        super().__init__(
            link,
            name=name,
            write_target=eb1.WRITE_UUID,
            soft_limits=soft_limits,
            max_raise_per_100ms=max_raise_per_100ms,
            interval=b0_interval,
        )
        self._answer_timeout = answer_timeout
        self._max_retries = max_retries
        self._be_requests: RequestTracker[str, eb1.BE] = RequestTracker(
            device=self.name, answer_timeout=answer_timeout, max_retries=max_retries
        )
        self._strength = [0, 0]
        """The unit's strengths as its last B1 reported them."""
        # The ceilings (EmsButterflyDriver._ceiling) are the wheel's values this session.
        self._hold = [False, False]
        """Leave a channel where the wheel put it until the program asks for a new strength."""
        self._seq = 0
        self._pending: _Change | None = None
        self._settled = asyncio.Event()
        """Set while no strength change awaits its B1."""
        self._settled.set()
        self._active = False
        """B0s with waveform are being written (a session output runs)."""
        self._zero_first = False
        self.b0_written = 0
        """B0 messages written since the driver was made."""
        self._last_b0_at = float("-inf")
        self._last_news_at = float("-inf")
        """Loop time of the last B0 that carried something new: MIN_B0_GAP counts from it."""
        """Loop time of the last B0 written: the cadence and the minimum gap count from it."""
        self._wire_waves: _Waves | None = None
        """The waveform the last B0 carried (None: unknown, nothing written yet)."""
        self._waves_of: tuple[ButterflyOutput, _Waves] | None = None
        """The last target _waves() was asked for, and its answer."""

    # -- state ----------------------------------------------------------------

    @property
    def strengths(self) -> tuple[int, int]:
        """Strengths A and B as the unit last reported them."""
        return (self._strength[0], self._strength[1])

    @property
    def _change(self) -> _Change | None:
        """The strength change awaiting its B1, if any."""
        return self._pending

    @_change.setter
    def _change(self, change: _Change | None) -> None:
        self._pending = change
        if change is None:
            self._settled.set()
        else:
            self._settled.clear()

    def reset_session(self) -> None:
        """A new session: forget the wheel's ceilings."""
        self._ceiling = [None, None]
        self._hold = [False, False]
        # A raise the ceiling held back may be due now.
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Capabilities:
        """Daemon rule 1: BF with the soft limits, check BE, then a sequenced B0 to zero."""
        self._connected = False
        self._target = None
        self._active = False
        self._change = None
        self._wire_waves = None

        async def handshake() -> None:
            await self._write_soft_limits()
            self._tasks.start(self._pump(), "b0-pump")
            await self._zero_and_wait()

        caps = await self._connect_with(timeout, handshake)
        logger.info("%s: EB1 butterfly, soft limits %s", self.name, self.soft_limits)
        return caps

    async def _abort_connect(self) -> None:
        await super()._abort_connect()
        self._change = None  # after the pump ended: nothing sets it again

    async def set_soft_limits(self, limits: tuple[int, int]) -> None:
        """Write new soft limits (BF) and check the BE; the unit then never exceeds them."""
        checked = checked_soft_limits(limits)
        self._require_connected()
        self.soft_limits = checked
        await self._write_soft_limits()
        logger.info("%s: soft limits now %s", self.name, self.soft_limits)
        # A raise the old limit held back may be due now.
        self._wake.set()

    async def _write_soft_limits(self) -> None:
        bf = eb1.BF(self.soft_limits[0], self.soft_limits[1])
        data = eb1.encode(bf)

        async def send() -> None:
            await self._write(data)

        try:
            be = await self._be_requests.request("BE", send, what="BF")
        except LinkLostError as exc:
            await self._give_up(exc)
            raise
        if be.values() != bf.values():
            raise IdentificationError(
                f"{self.name}: BE {be.values()} does not confirm BF {bf.values()}"
            )

    stop_timeout = STOP_TIMEOUT

    async def _stop_on_close(self) -> None:
        self._target = None
        self._active = False
        await self._zero_and_wait()

    def _forget_outputs(self) -> None:
        self._target = None

    def _forget_held_outputs(self) -> None:
        # The unit keeps its strengths through the silence of a gap: zero them before any
        # raise (at once while B0s were being written), so the ramp starts from 0 again.
        self._target = None
        self._zero_first = True
        change = self._change
        if change is not None and change.generation is not None:
            # A change towards a target from before the gap is never resent after it.
            self._resolve_superseded(change)
            self._change = None

    # -- outputs --------------------------------------------------------------

    async def apply(self, output: Output) -> None:
        """Record the target; the pump writes it at once when it can, and ramps towards it."""
        if output is self._target and self._active:
            # The target in force again (the runner re-applies it on every pass): it was
            # checked when it came and the pump writes it; only the link and the lease
            # need a look.
            self._require_connected()
            self._stamp(output)
            return
        output = self._checked_output(output)
        channels = (output.a, output.b)
        self._stamp(output)  # a request handled after a gap was made before it: dropped
        previous = self._target or ButterflyOutput.off()
        for i, (old, new) in enumerate(zip((previous.a, previous.b), channels, strict=True)):
            if new.strength != old.strength:
                self._hold[i] = False
        changed = output != self._target
        self._target = output
        if changed or not self._active:
            # After the change: the pump sends the new target at once (or starts). The
            # runner re-applies the same target often; that needs no wake-up.
            self._wake.set()

    async def stop(self) -> None:
        """One B0 setting both strengths to 0 with silent waveform, then no more B0; ends lease."""
        self.revoke_lease()
        self._require_connected()
        self._target = None
        self._active = False
        await self._zero_and_wait()

    async def status(self) -> StatusReport:
        """Battery read from the unit; strengths as reported by B1; output while writing."""
        self._require_connected()
        with contextlib.suppress(TimeoutError):
            # A change on its way: report the strengths its B1 brings, not the ones before.
            async with asyncio.timeout(self._answer_timeout):
                await self._settled.wait()
        await self._read_battery()
        target = self._target if self._active else None
        outputs = {"strength_a": self._strength[0], "strength_b": self._strength[1]}
        for i, name in enumerate("ab"):
            ch = (target.a, target.b)[i] if target is not None else None
            outputs[f"output_{name}"] = (
                0 if ch is None or ch.is_zero else round(self._strength[i] * ch.intensity / 100)
            )
        return self._status_report(outputs, writing=self._active)

    # -- strength changes ---------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = self._seq % 15 + 1
        return self._seq

    async def _send_change(
        self,
        values: tuple[int | None, int | None],
        waves: _Waves,
        *,
        done: asyncio.Future[eb1.B1] | None = None,
        generation: int | None = None,
    ) -> None:
        """Write a B0 that sets strengths, registered before the write so its B1 is not missed.

        generation: the lease generation of a change towards a session target (None for a
        zeroing one, which is always safe to send).
        """
        now = asyncio.get_running_loop().time()
        steps = _steps(values, self._strength)
        change = _Change(self._next_seq(), steps, now, done=done, generation=generation)
        if self._change is not None:
            # Only a zeroing B0 (stop, pause, lease end) is sent with a B1 outstanding: it
            # must not wait; as it says "set to 0", it wins whatever the other one did.
            self._resolve_superseded(self._change)
        self._change = change
        # The pump resends the change when its B1 does not come, so it must learn the
        # deadline, also when it sleeps without one (stop() writes its B0 from outside).
        self._wake.set()
        await self._write_b0(change.seq, change.steps, waves, generation)

    async def _resend(self, change: _Change, waves: _Waves, generation: int | None) -> None:
        """Write an unanswered change again, the same bytes under its own sequence number."""
        if self._change is not change:
            return
        change.misses += 1
        logger.info("%s: no B1 for sequence %d, resend", self.name, change.seq)
        now = asyncio.get_running_loop().time()
        change.sent_at = now
        # A raise resent may land a second time (its first write landed, its B1 was lost):
        # rule 2 counts it as a raise of its own.
        for i, (mode, value) in enumerate(change.steps):
            if mode == _UP:
                self._ramp.spend(i, value, now)
        await self._write_b0(change.seq, change.steps, waves, generation)

    def _resolve_superseded(self, change: _Change) -> None:
        if change.done is not None and not change.done.done():
            change.done.set_result(eb1.B1(change.seq, self._strength[0], self._strength[1]))

    async def _zero_and_wait(self) -> None:
        """Set both strengths to 0 with silent waveform (seq != 0) and wait for its B1."""
        done: asyncio.Future[eb1.B1] = asyncio.get_running_loop().create_future()
        self._zero_first = False
        await self._send_change((0, 0), (_SILENT, _SILENT), done=done)
        limit = (self._max_retries + 2) * self._answer_timeout + 2 * self._interval
        try:
            async with asyncio.timeout(limit):
                await done
        except TimeoutError as exc:
            raise DeviceTimeoutError("no B1 for the zeroing B0", device=self.name) from exc
        finally:
            if not done.done():
                done.cancel()

    async def _write_b0(
        self,
        seq: int,
        steps: tuple[_Step, _Step],
        waves: _Waves,
        generation: int | None,
    ) -> None:
        """Write one B0; generation: as LinkDevice._write (None only for a silent zeroing)."""
        (freq_a, int_a), (freq_b, int_b) = waves
        (mode_a, value_a), (mode_b, value_b) = steps
        b0 = eb1.B0(
            seq=seq,
            mode_a=mode_a,
            mode_b=mode_b,
            value_a=value_a,
            value_b=value_b,
            freq_a=freq_a,
            intensity_a=int_a,
            freq_b=freq_b,
            intensity_b=int_b,
        )
        async with self._write_lock:
            # The cadence and the minimum gap count from the moment the B0 is handed over.
            self._last_b0_at = asyncio.get_running_loop().time()
            self._wire_waves = waves
            try:
                await self._write(eb1.encode(b0), generation=generation)
            except SafetyError:
                self._wire_waves = None  # built before a gap in service, and not sent
                raise
        self.b0_written += 1

    def _waves(self, target: ButterflyOutput) -> _Waves:
        cached = self._waves_of
        if cached is not None and cached[0] is target:
            return cached[1]  # the same target as the last pump pass (outputs are immutable)
        waves = (_wave(target.a), _wave(target.b))
        self._waves_of = (target, waves)
        return waves

    # -- rule 2: the ramp, counted on elapsed time (EmsButterflyDriver._ramp) ---------

    def _planned(
        self, target: ButterflyOutput, now: float
    ) -> tuple[tuple[int | None, int | None] | None, float | None]:
        """The next strength change towards the target under rule 2 and the wheel, if any,
        and when rule 2 lets a raise it holds back entirely go (None: none held back)."""
        if self._zero_first:
            return (0, 0), None
        values: list[int | None] = []
        held_until: float | None = None
        for i, ch in enumerate((target.a, target.b)):
            current = self._strength[i]
            want = min(ch.strength, self.soft_limits[i])
            if self._hold[i]:
                want = current
            ceiling = self._ceiling[i]
            if ceiling is not None:
                want = min(want, ceiling)
            if want > current:
                allowance = self._raise_allowance(i, now)
                if allowance == 0:
                    frees = self._ramp.frees_at(i)
                    held_until = frees if held_until is None else min(held_until, frees)
                want = min(want, current + allowance)
            values.append(None if want == current else want)
        if values[0] is None and values[1] is None:
            return None, held_until
        return (values[0], values[1]), held_until

    # -- the pump -------------------------------------------------------------

    def _resend_at(self, change: _Change) -> float:
        # 1 ms of float slack, so a resend due at a wake-up is not put off by a hair.
        return change.sent_at + self._answer_timeout - 1e-3

    async def _tick(self) -> float | None:
        """Write the B0 due now, if any; return when to look again (None: only when woken)."""
        loop = asyncio.get_running_loop()
        # A lease that ran out unrevoked is a gap in service: the target is forgotten, a
        # zeroing B0 follows below, and every B0 with a waveform carries this generation.
        self.check_lease()
        generation = self._lease_gen
        now = loop.time()
        change = self._change
        resend_due = change is not None and now >= self._resend_at(change)
        if change is not None and resend_due and change.misses >= self._max_retries:
            error = LinkLostError(
                f"no B1 for sequence {change.seq} after {self._max_retries} retries",
                device=self.name,
            )
            await self._give_up(error)
            raise error

        target = self._target
        wanted = target is not None and (target.a.strength > 0 or target.b.strength > 0)
        lease_valid = now < self._lease_until
        if self._active and not (wanted and lease_valid):
            self._active = False
            if wanted and self.lease_revoked:
                # Rule 3: a stalled owner; stop writing and the waveform runs out in 100 ms.
                logger.info("%s: lease revoked, B0s stop", self.name)
                self._target = None
                self._change = None
                self._zero_first = True
                return None
            if wanted:
                logger.info("%s: lease expired, strengths to 0", self.name)
                self._target = None
            # A zeroing B0 never waits for the minimum gap.
            await self._send_change((0, 0), (_SILENT, _SILENT))
            return loop.time()  # look again: this change's resend deadline
        if target is None or not wanted or not lease_valid:
            if change is None:
                return None
            if resend_due:
                await self._resend(change, (_SILENT, _SILENT), change.generation)
                return loop.time()
            return self._resend_at(change)

        self._active = True
        waves = self._waves(target)
        values, held_until = self._planned(target, now) if change is None else (None, None)
        news = resend_due or values is not None or waves != self._wire_waves
        # Something new (or a resend) goes at once, but never closer than MIN_B0_GAP to the
        # last news. Not to the last cadence B0: B0s 90 ms apart and cues 100 ms apart
        # would then hold every cue back a little more each time, up to the gap. Nothing
        # new: the next B0 of the cadence, which restarts at every write.
        write_at = self._last_news_at + MIN_B0_GAP if news else self._last_b0_at + self._interval
        if now < write_at:
            # Sleep until the write, the lease's end, a resend, or rule 2 letting a raise go.
            deadline = min(write_at, self._lease_until)
            if change is not None and not resend_due:
                deadline = min(deadline, self._resend_at(change))
            if held_until is not None:
                deadline = min(deadline, held_until)
            return deadline
        if news:
            self._last_news_at = now
        if resend_due and change is not None:
            await self._resend(change, waves, generation)
        elif values is not None:
            self._zero_first = False
            rises = [
                (i, value - self._strength[i])
                for i, value in enumerate(values)
                if value is not None and value > self._strength[i]
            ]
            try:
                await self._send_change(values, waves, generation=generation)
            finally:
                # Counted from when the raise left, not when it was planned (as the
                # Coyote V2's): a write held up must not bring the next step sooner.
                sent_at = loop.time()
                for i, rise in rises:
                    self._ramp.spend(i, rise, sent_at)
        else:
            await self._write_b0(0, _UNCHANGED, waves, generation)
        return loop.time()  # look again: what is due next depends on what was just written

    # -- receiving ------------------------------------------------------------

    def _on_receive(self, source: str, data: bytes) -> None:
        if self._on_battery(source, data):
            return
        try:
            message = eb1.decode(data)
        except FrameError as exc:
            logger.debug("%s: ignored a bad notification %s: %s", self.name, Hex(data), exc)
            return
        logger.debug("%s <- %s %s", self.name, Hex(data), message)
        if isinstance(message, eb1.BE):
            self._be_requests.resolve("BE", message)
        elif isinstance(message, eb1.B1):
            self._on_b1(message)

    def _on_b1(self, b1: eb1.B1) -> None:
        before = self._strength
        self._strength = [b1.strength_a, b1.strength_b]
        if b1.seq == 0:
            if self._connected:
                self._on_wheel(before, b1)
            return
        change = self._change
        if change is None or change.seq != b1.seq:
            logger.debug("%s: late B1 for sequence %d", self.name, b1.seq)
            return
        self._change = None
        if change.done is not None and not change.done.done():
            change.done.set_result(b1)
        # After the change is cleared: a newer target that waited for this B1 goes at once.
        self._wake.set()

    def _on_wheel(self, before: list[int], b1: eb1.B1) -> None:
        # Rule 4: the user's word. Adopt it and never raise past it this session.
        for i, value in enumerate((b1.strength_a, b1.strength_b)):
            if value != before[i]:
                self._ceiling[i] = value
                self._hold[i] = True
        change = self._change
        if change is not None and any(mode == _UP for mode, _ in change.steps):
            # A raise still unanswered as the wheel's word arrives landed after the turn, or
            # is lost, or is still on its way (an earlier landing's B1 would have come
            # first). Should it need a resend (its B1 lost), "increase" again would put a
            # second step on the word: the resend takes the step back instead, which leaves
            # the unit at the word, or one step under it if the raise never landed.
            change.steps = (_taken_back(change.steps[0]), _taken_back(change.steps[1]))
        self._emit(EmsWheelChanged(self.name, self.kind, b1.strength_a, b1.strength_b))

    def _on_lost(self, error: LinkLostError) -> None:
        self._be_requests.fail_all(error)
        change, self._change = self._change, None
        if change is not None and change.done is not None and not change.done.done():
            change.done.set_exception(error)
        self._active = False
        self._target = None
        # The pump ends with the link (its task is cancelled too): let it see that now.
        self._wake.set()
