"""The session runner: plays a SessionPlan on every device at once, in step, safely.

One loop drives the session. It wakes about 20 times a second and also
exactly when the next cue of any device is due, works out what each device
should put out now (the plan's cue × the runner's own envelope: the user's
scale, a fresh ramp from zero after a start, a resume or a reconnect, and the
soft fade at the end), and hands it to that device's worker only when the
safe output changes. Each device has a worker task that sends the latest
request through :class:`controller.safety.SafeDevice` (the one safety layer:
nothing reaches a driver any other way), so a slow device never holds the
others back, while all of them read the same clock.

The loop renews each healthy device's lease (0.5 s) on every pass: the lease
is the "session is healthy" signal, never renewed for a device that is lost,
paused or ended, so a stalled runner lets every device stop by itself. A lease
that lapsed unrevoked is a gap in service (a stall, a blocked loop, a suspended
process): whichever side sees it first (the driver, renew_lease, or this loop
running later than due by more than a lease) the driver zeroes the device and
reports ServiceGap, and the device comes back as after a reconnect, through a
fresh ramp from zero, with no request from before the gap.

Limits: a plan longer than the session limit (the child's 15 minutes, whatever
the program) is refused before anything moves (``check_fits``), naming a
program that fits; a session the limit still ends (pauses count) ends as
``Outcome.CUT``, never as completed. A child's audience also leaves the
butterfly out (no EMS for a child, ``check_profile``); both checks are in
:mod:`controller.session.checks`. The loop wakes when the safety layer's
vibration burst rule changes what a belt may send
(``SafeDevice.next_burst_change``), so a burst ends on time.

Time runs on :class:`~controller.session.clock.ScaledClock` (see that module).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.backoff import Backoff
from controller.gc_quiet import quiet_gc
from controller.profiles import DEFAULT_PROFILE, Profile
from controller.safety import (
    Rule,
    SafetyLimits,
    SessionSafety,
    Violation,
    scale_output,
    write_device_limits,
)
from controller.session.checks import check_fits, check_profile, limits_for
from controller.session.clock import SafetyClock, ScaledClock, Timing
from controller.session.deadline import Deadline
from controller.session.history import SessionHistory
from controller.session.lanes import Lane
from controller.session.states import (
    PAUSE_PILLOW_EMPTY,
    PAUSE_USER,
    DeviceSnapshot,
    DeviceState,
    Outcome,
    RunnerEvent,
    RunnerListener,
    SessionResult,
    SessionSnapshot,
    SessionState,
    output_channels,
)
from devices.drivers.base import Device, Wakeup
from devices.errors import ConfigError, LinkError, MassagedError, SafetyError
from devices.events import (
    AutoOff,
    DeviceEvent,
    DeviceFault,
    EmsWheelChanged,
    LinkLost,
    LowBattery,
    Overheated,
    PillowOccupancy,
    ServiceGap,
    StopButtonPressed,
    WatchdogTripped,
)
from devices.outputs import BeltOutput, PillowOutput
from programs.timeline import SessionPlan, StepSpan

if TYPE_CHECKING:
    # Only for the annotations: controller.store imports Outcome from this package.
    from controller.store import Store

logger = logging.getLogger(__name__)

_NAP_S = 0.00025
"""Longest blocking nap inside a precise wait: how long the loop may be held at a time."""
_SPIN_S = 0.00015
"""The end of a precise wait is yielded away, not napped: a nap often ends ~65 µs late."""


class SessionRunner:
    """Plays one SessionPlan on its devices through the safety layer; see the module doc."""

    def __init__(
        self,
        plan: SessionPlan,
        devices: Mapping[str, Device],
        *,
        profile: Profile = DEFAULT_PROFILE,
        store: Store | None = None,
        clock: ScaledClock | None = None,
        speed: float = 1.0,
        scale: float = 1.0,
        device_limits: Mapping[str, SafetyLimits] | None = None,
        timing: Timing | None = None,
        simulated: bool = False,
    ) -> None:
        missing = sorted(set(devices) - set(plan.timelines))
        if missing:
            raise ConfigError(f"no timeline in the plan for device(s): {', '.join(missing)}")
        if not devices:
            raise ConfigError("a session needs at least one device")
        self.plan = plan
        self.profile = profile
        self.clock = clock if clock is not None else ScaledClock(speed)
        self.timing = timing or Timing()
        self.limits = limits_for(profile, plan.audience)
        self.simulated = simulated
        """On simulated devices: marked so in the history, never counted toward a course."""
        self._scale = _unit(scale)
        self._lanes = [
            Lane(name, device, plan.timelines[name], (device_limits or {}).get(name))
            for name, device in devices.items()
        ]
        self._history = SessionHistory(store, self.timing.history_timeout_s)
        self._listeners: list[RunnerListener] = []
        self.safety: SessionSafety | None = None
        self.state = SessionState.READY
        self.done = asyncio.Event()
        """Set once the session has ended and every device is stopped."""
        self._wake = Wakeup()
        self._started = False
        self._ending = False
        self._pause_reasons: set[str] = set()
        self._pause_wanted: str | None = None
        self._resume_wanted = False
        self._stop_wanted = False
        self._fade_from: float | None = None
        self._estop = False
        self._estop_done = asyncio.Event()
        self._limit_reached = False
        self._controls: set[asyncio.Task[None]] = set()
        self._step: StepSpan | None = None
        self._all_down_since: float | None = None
        self._dropped: list[str] = []
        self._end_t: float = plan.duration
        self._result: SessionResult | None = None

    # -- observing ------------------------------------------------------------

    def add_listener(self, listener: RunnerListener) -> Callable[[], None]:
        """Call listener for every session event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    @property
    def devices(self) -> dict[str, Device]:
        """The session's devices by name (those left out of it included)."""
        return {lane.name: lane.device for lane in self._lanes}

    @property
    def scale(self) -> float:
        """The user's overall intensity, 0..1 (below the profile's caps)."""
        return self._scale

    @property
    def paused(self) -> bool:
        """True while the session is paused."""
        return self.state == SessionState.PAUSED

    @property
    def result(self) -> SessionResult | None:
        """How the session ended (None until it has)."""
        return self._result

    def snapshot(self) -> SessionSnapshot:
        """The session now: step, time, state and each device's outputs."""
        t = self.clock.now()
        step = self.plan.step_at(t) if self.state != SessionState.READY else None
        remaining = max(0.0, self._end_t - t) if self._started else self.plan.duration
        devices = {
            lane.name: DeviceSnapshot(
                name=lane.name,
                kind=lane.kind,
                state=lane.state,
                output=output_channels(lane.device.output)
                if lane.device.is_connected
                else output_channels(lane.off),
                link=lane.link_word,
            )
            for lane in self._lanes
        }
        safety = self.safety
        return SessionSnapshot(
            program_id=self.plan.program_id,
            title=self.plan.title,
            state=self.state,
            step_index=step.index if step else None,
            step_label=step.label if step else "",
            step_count=len(self.plan.steps),
            elapsed=t,
            remaining=remaining,
            duration=self.plan.duration,
            scale=self._scale,
            gentler_presses=safety.gentler_presses if safety else 0,
            gentler_factor=safety.gentler_factor if safety else 1.0,
            pause_reasons=tuple(sorted(self._pause_reasons)),
            devices=devices,
        )

    # -- controls (from the keyboard, a signal, MQTT, a test) -------------------

    def pause(self) -> None:
        """Outputs to zero at once; the plan stands still until resume()."""
        if self._ending or self.state not in (SessionState.RUNNING, SessionState.PAUSED):
            return
        self._pause_wanted = PAUSE_USER
        self._wake.set()

    def resume(self) -> None:
        """Go on where the plan stood, with a fresh ramp from zero."""
        if self._ending or self.state not in (SessionState.RUNNING, SessionState.PAUSED):
            return
        self._resume_wanted = True
        self._wake.set()

    def toggle_pause(self) -> None:
        """Pause when running, resume when paused."""
        if self.state == SessionState.PAUSED or self._pause_wanted:
            self._pause_wanted = None
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """End the session softly: outputs fade out, then every device stops."""
        if self._ending or self.state in (SessionState.STOPPING, SessionState.ENDED):
            return
        if not self._stop_wanted:
            self._stop_wanted = True
            self._event("stop", detail={})
        self._wake.set()

    def gentler(self) -> float:
        """Every intensity drops at once by GENTLER_STEP, for the rest of the session."""
        safety = self.safety
        if safety is None or self._ending:
            return 1.0
        factor = safety.gentler()
        self._event("gentler", detail={"presses": safety.gentler_presses, "factor": factor})
        self._wake.set()
        return factor

    def set_scale(self, scale: float) -> float:
        """Set the overall intensity (clipped to 0..1); returns the new value."""
        new = _unit(scale)
        if new != self._scale:
            self._scale = new
            self._event("scale", detail={"scale": new})
            self._wake.set()
        return new

    def set_heat(self, device: str, on: bool | None) -> None:
        """The user's heater choice for one device (None: follow the program again).

        The safety layer still applies: the heater's on-time limit, overheat, and
        no heat on a device without a heater.
        """
        lane = next((lane for lane in self._lanes if lane.name == device), None)
        if lane is None or lane.state in (DeviceState.DROPPED, DeviceState.ENDED):
            raise ConfigError(f"{device} is not playing in this session")
        if not lane.device.capabilities.heater:
            raise ConfigError(f"{device} has no heater")
        lane.heat_override = on
        self._event("heater", device, {"on": on})
        self._wake.set()

    def request_emergency_stop(self) -> None:
        """emergency_stop() from synchronous code (a key, a signal); the runner awaits it."""
        if self._estop_done.is_set() or self.done.is_set():
            return  # already stopped
        task = asyncio.get_running_loop().create_task(self.emergency_stop(), name="emergency-stop")
        self._controls.add(task)
        task.add_done_callback(self._controls.discard)

    async def emergency_stop(self) -> None:
        """Every output of every device to zero at once, concurrently, no fade; ends the session."""
        first = not self._estop
        self._estop = True
        if self.safety is not None:
            # Refuse every request from now on, including one already on its way.
            self.safety.halted = True
        for lane in self._lanes:
            lane.device.revoke_lease()
        if first:
            logger.warning("EMERGENCY STOP")
        try:
            await asyncio.gather(*(self._estop_lane(lane) for lane in self._lanes))
        finally:
            self._estop_done.set()
            if first:
                self._event("emergency_stop", detail={})
            self._wake.set()

    async def _estop_lane(self, lane: Lane) -> None:
        if not lane.device.is_connected:
            return  # nothing can be sent; a lost device stops by its own watchdog
        try:
            async with asyncio.timeout(self.timing.stop_timeout_s):
                if lane.safe is not None:
                    await lane.safe.emergency_stop()
                else:
                    await lane.device.stop()
        except (MassagedError, TimeoutError) as err:
            logger.error("%s: emergency stop failed: %s", lane.name, err)

    # -- running ----------------------------------------------------------------

    async def run(self) -> SessionResult:
        """Play the plan to its end (or a stop); every device is stopped when this returns."""
        if self._started:
            raise RuntimeError("a SessionRunner runs once")
        self._started = True
        try:
            dropped = check_profile(
                self.profile, {lane.kind for lane in self._lanes}, self.limits.audience
            )
            check_fits(self.plan, self.limits)
        except SafetyError:
            self._refused()
            raise
        for lane in self._lanes:
            if lane.kind in dropped:
                lane.state = DeviceState.DROPPED
                self._dropped.append(lane.name)
        outcome, reason = Outcome.FAULT, "the runner failed"
        try:
            with quiet_gc():
                await self._start()
                outcome, reason = await self._loop()
        except asyncio.CancelledError:
            outcome, reason = Outcome.STOPPED, "cancelled"
            raise
        except Exception as err:
            logger.exception("session runner failed")
            outcome, reason = Outcome.FAULT, f"runner error: {err}"
            raise
        finally:
            await self._shutdown(outcome, reason)
        assert self._result is not None  # set by _shutdown
        return self._result

    def _refused(self) -> None:
        self.state = SessionState.ENDED
        self.done.set()

    # -- limits -------------------------------------------------------------------

    def lane_limits(self, name: str) -> SafetyLimits:
        """One device's limits in this session: the session's, tightened by its own."""
        lane = self._lane(name)
        return self.limits if lane.limits is None else self.limits.stricter(lane.limits)

    def _lane(self, name: str) -> Lane:
        for lane in self._lanes:
            if lane.name == name:
                return lane
        raise ConfigError(f"{name} is not in this session")

    async def tighten(self, name: str, limits: SafetyLimits) -> SafetyLimits:
        """Lower one device's limits at once (a cap lowered mid-session); never raise them.

        The safety layer clamps under them from the next pass, which comes at once, and
        the device's own copy (the EB1's soft limit) follows; a raised cap changes
        nothing here (it applies from the next session). Returns the limits now in force.
        """
        lane = self._lane(name)
        lane.limits = limits if lane.limits is None else lane.limits.stricter(limits)
        if lane.safe is not None:
            lane.safe.tighten(lane.limits)
        # Re-decide this device's output now rather than at its next cue.
        lane.posted = None
        lane.force = True
        self._wake.set()
        if self.state != SessionState.ENDED:
            try:
                await write_device_limits(lane.device, self.lane_limits(name), lower_only=True)
            except (MassagedError, OSError) as err:
                # The host clamp holds already; a lost unit takes its limit at the reconnect.
                logger.warning("%s: the device's own limit is not written yet: %s", name, err)
        return self.lane_limits(name)

    def _active_lanes(self) -> list[Lane]:
        return [lane for lane in self._lanes if lane.state != DeviceState.DROPPED]

    async def _start(self) -> None:
        lanes = self._active_lanes()
        await asyncio.gather(*(self._connect_first(lane) for lane in lanes))
        for lane in lanes:
            # A new session: last session's stop-button latch or wheel ceiling is gone.
            lane.device.reset_session()
        self.clock.start()
        self.safety = SessionSafety(
            self.limits,
            clock=SafetyClock(self.limits.session_limit_s, self.clock),
            on_violation=self._on_violation,
        )
        await self._history.begin(
            self.plan.program_id,
            [lane.name for lane in self._lanes],
            self.profile.name,
            {
                "title": self.plan.title,
                "audience": self.limits.audience.value,
                "duration": self.plan.duration,
                "speed": self.clock.speed,
                "scale": self._scale,
                "kinds": {lane.name: lane.kind.value for lane in self._lanes},
                "dropped": list(self._dropped),
            },
            simulated=self.simulated,
        )
        for name in self._dropped:
            self._event("dropped", name, {"reason": "EMS-only contraindication"})
        # After the history's start: a standing condition (an empty pillow) arrives at
        # once, as an event, and belongs in the record.
        for lane in lanes:
            lane.safe = self.safety.wrap(lane.device, limits=lane.limits)
            lane.remove_listener = lane.device.add_listener(
                functools.partial(self._on_device_event, lane)
            )
        loop = asyncio.get_running_loop()
        for lane in lanes:
            lane.worker = loop.create_task(self._worker(lane), name=f"{lane.name}:session")
            if lane.state == DeviceState.CONNECTING:
                lane.state = DeviceState.RUNNING
            elif lane.state == DeviceState.LOST:
                self._start_reconnect(lane)
        self.state = SessionState.RUNNING
        logger.info(
            "session %s started on %s (speed %g)",
            self.plan.program_id,
            ", ".join(lane.name for lane in lanes),
            self.clock.speed,
        )
        self._event("start", detail={"devices": [lane.name for lane in lanes]}, history=False)

    async def _connect_first(self, lane: Lane) -> None:
        try:
            if not lane.device.is_connected:
                await lane.device.connect(timeout=self.timing.connect_timeout_s)
            # The device's own copy of this session's rules (the EB1's soft limits and
            # ramp), from this session's profile: never what it was given at connect.
            await write_device_limits(lane.device, self.lane_limits(lane.name))
        except (MassagedError, OSError) as err:
            logger.warning("%s: cannot connect (%s): the session starts without it", lane.name, err)
            lane.state = DeviceState.LOST

    async def _loop(self) -> tuple[Outcome, str]:
        """The one loop: returns the outcome and why."""
        timing = self.timing
        loop = asyncio.get_running_loop()
        due: float | None = None
        while True:
            if due is not None and loop.time() - due > timing.lease_s:
                # The loop itself ran late past a lease (a stall): a gap for every device.
                self._gap_in_service(loop.time() - due)
            due = None
            if self._estop:
                await self._estop_done.wait()
                return Outcome.EMERGENCY_STOP, "emergency stop"
            if self._controls_due():
                await self._handle_controls()
                if self._estop:
                    continue
            assert self.safety is not None
            pass_started = loop.time()
            t = self.clock.now()
            real = self.clock.real()
            running = self.state in (SessionState.RUNNING, SessionState.STOPPING)
            # The plan's end, or the safety limit if it comes first (pauses count there).
            # One reading of the safety clock for the whole pass (remaining is 0 exactly
            # when the clock has expired).
            wall = self.safety.clock.elapsed()
            remaining = self.safety.clock.remaining_at(wall)
            self._end_t = min(self.plan.duration, t + remaining)
            if self.state == SessionState.PAUSED and self._stop_wanted:
                return Outcome.STOPPED, "stopped"
            if self._limit_reached or remaining <= 0:
                if self.state == SessionState.PAUSED:
                    return Outcome.CUT, "the session limit passed while paused"
                return Outcome.CUT, "cut at the session limit"
            if running and self._stop_wanted and self._fade_from is None:
                self._fade_from = t
                self.state = SessionState.STOPPING
            if self._fade_from is not None and t >= self._fade_from + timing.fade_s:
                return Outcome.STOPPED, "stopped"
            if running and t >= self._end_t - 1e-6:
                if self._end_t < self.plan.duration - 1e-6:
                    return Outcome.CUT, "cut at the session limit"
                return Outcome.COMPLETED, "completed"
            ended = self._check_devices(real)
            if ended is not None:
                return ended
            self._track_step(t)
            if running:
                for lane in self._lanes:
                    if lane.state == DeviceState.RUNNING:
                        self._drive(lane, t, real, wall)
            delay, cue = self._next_delay(t, running, wall)
            self._wake.arm()
            # An absolute deadline from the start of the pass: the next cue is due at t +
            # delay, however long this pass's work took (a relative sleep would add it).
            due = pass_started + delay
            if cue and timing.cue_lead_s:
                await self._wait_until(due)
            else:
                await self._wake.sleep(due)

    async def _wait_until(self, deadline: float) -> None:
        """Sleep until deadline (loop time) or until woken, precisely: to a few microseconds.

        A precise wait sleeps until cue_lead_s before the deadline, then yields to the
        loop until the deadline passes: the loop stays responsive (a stop is handled
        at once) and the cue goes out within microseconds of its time. Between two
        yields it naps (a blocking sleep of at most _NAP_S) until _SPIN_S before the
        deadline, so the wait costs about a tenth of the CPU a pure busy wait would.
        """
        lead = self.timing.cue_lead_s
        await self._wake.sleep(deadline - lead)
        loop = asyncio.get_running_loop()
        # A deliberate busy wait, yielding to the loop each time (at most cue_lead_s):
        # no timer fires closer than a millisecond, and the wake-up is what it also watches.
        while not self._wake.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if remaining > _SPIN_S:
                # Nothing else to do this close to a cue; the loop is held for at most
                # _NAP_S at a time, then looks at everything that came meanwhile.
                time.sleep(min(remaining - _SPIN_S, _NAP_S))  # noqa: ASYNC251
            await asyncio.sleep(0)

    def _drive(self, lane: Lane, t: float, real: float, wall: float) -> None:
        """Post the output due now if the safe output changed; renew the lease.

        t: the plan position, real: real seconds, wall: the safety clock, all of this pass.
        """
        safe = lane.safe
        assert safe is not None
        device = lane.device
        if not device.is_connected:
            return
        timing = self.timing
        device.renew_lease(timing.lease_s)
        cue = lane.timeline.cue_at(t)
        base = cue.output if cue is not None else lane.off
        if lane.heat_override is not None and isinstance(base, BeltOutput | PillowOutput):
            # The output types with a heater field (set_heat refuses a device without one).
            base = dataclasses.replace(base, heat=lane.heat_override)
        factor = self._factor(lane, t)
        # The same request as the last pass's is the very object, so that the safety
        # layer's clamp memo answers without clamping again.
        request = lane.scaled
        if request is None or base is not lane.scaled_from or factor != lane.scaled_by:
            request = scale_output(base, factor)
            lane.scaled_from, lane.scaled_by, lane.scaled = base, factor, request
        decided = safe.clamp(request)
        posted = lane.posted
        due = lane.force or (decided is not posted and decided != posted)
        if lane.ems:
            # EMS: every pass that is half an EMS tick on, never more than ems_tick_s apart.
            due = due or real - lane.posted_at >= timing.ems_tick_s / 2
        else:
            sent = safe.sent
            if sent is not None and sent.heat:
                due = due or real - lane.posted_at >= timing.heat_refresh_s
        burst = safe.next_burst_change()
        if burst is not None and wall >= burst:
            # The burst rule changes what may be sent now (a burst's end, a rest's end).
            due = True
        if due:
            lane.request = request
            lane.posted = decided
            lane.posted_at = real
            lane.force = False
            lane.wake.set()

    def _factor(self, lane: Lane, t: float) -> float:
        """The runner's envelope: scale × fresh ramp × fade (never above 1)."""
        timing = self.timing
        factor = self._scale * _unit((t - lane.ramp_from) / timing.ramp_s if timing.ramp_s else 1)
        if timing.fade_s > 0:
            factor *= _unit((self._end_t - t) / timing.fade_s)
            if self._fade_from is not None:
                factor *= _unit(1 - (t - self._fade_from) / timing.fade_s)
        elif self._fade_from is not None:
            factor = 0.0
        return factor

    def _next_delay(self, t: float, running: bool, wall: float) -> tuple[float, bool]:
        """Real seconds to the next pass (a tick, or the next cue change if sooner); a cue?

        wall: the safety clock's reading of this pass (the burst rule runs on it).
        """
        delay = self.timing.tick_s
        cue = False
        if running:
            # The soonest of: each running device's next cue, the plan's (or the limit's)
            # end, the fade's end, and the burst rule's next changes.
            soonest = self._end_t
            for lane in self._lanes:
                if lane.state != DeviceState.RUNNING:
                    continue
                change = lane.timeline.next_change_after(t)
                if change is not None and change < soonest:
                    soonest = change
                burst = lane.safe.next_burst_change() if lane.safe is not None else None
                if burst is not None:
                    # A plan position (the burst rule's clock counts pauses too); only one
                    # still ahead: one already due is posted by this pass's _drive.
                    at = t + (burst - wall)
                    if t < at < soonest:
                        soonest = at
            if self._fade_from is not None:
                soonest = min(soonest, self._fade_from + self.timing.fade_s)
            if soonest > t:
                # A hair past the change, so that cue_at() sees the new cue.
                until_change = self.clock.real_seconds(soonest - t) + 1e-4
                if until_change <= delay:
                    delay, cue = until_change, True
        return max(self.timing.min_pass_s, delay), cue

    def _track_step(self, t: float) -> None:
        current = self._step
        if current is not None and current.start <= t < current.end:
            return  # still the same step (step_at would find it again)
        step = self.plan.step_at(t)
        if step is not None and step != self._step:
            self._step = step
            logger.info("step %d/%d: %s", step.index + 1, len(self.plan.steps), step.label)
            self._event(
                "step",
                detail={"index": step.index, "label": step.label, "count": len(self.plan.steps)},
                history=False,
            )

    def _check_devices(self, real: float) -> tuple[Outcome, str] | None:
        """The end of the session when no device can run any more."""
        for lane in self._lanes:
            # (A dropped device is never running nor paused.)
            if lane.state in (DeviceState.RUNNING, DeviceState.PAUSED):
                self._all_down_since = None
                return None
        lanes = self._active_lanes()
        if not any(lane.state == DeviceState.LOST for lane in lanes):
            return Outcome.STOPPED, "every device was stopped by its own stop button"
        if self._all_down_since is None:
            self._all_down_since = real
            logger.warning("no device is running: waiting for one to come back")
        elif real - self._all_down_since >= self.timing.fault_grace_s:
            return Outcome.FAULT, "every device failed"
        return None

    # -- pause and resume ------------------------------------------------------------

    def _controls_due(self) -> bool:
        """Whether _handle_controls has anything to do (most passes: no)."""
        if self._pause_wanted is not None or self._resume_wanted:
            return True
        return any(lane.empty_since is not None for lane in self._lanes)

    async def _handle_controls(self) -> None:
        t = self.clock.now()
        wall = self.clock.wall()
        for lane in self._lanes:
            if (
                lane.empty_since is not None
                and wall - lane.empty_since >= self.timing.empty_pause_s
                and PAUSE_PILLOW_EMPTY not in self._pause_reasons
                and self.state == SessionState.RUNNING
            ):
                lane.empty_since = None
                await self._pause(PAUSE_PILLOW_EMPTY, t)
        if self._pause_wanted is not None:
            reason, self._pause_wanted = self._pause_wanted, None
            if self.state == SessionState.RUNNING:
                await self._pause(reason, t)
            elif self.state == SessionState.PAUSED:
                self._pause_reasons.add(reason)
        if self._resume_wanted:
            self._resume_wanted = False
            if self.state == SessionState.PAUSED:
                # The user's word overrides an automatic pause too.
                for lane in self._lanes:
                    lane.empty_since = None
                self._pause_reasons.clear()
                self._resume(t, PAUSE_USER)

    async def _pause(self, reason: str, t: float) -> None:
        self._pause_reasons.add(reason)
        self.clock.pause()
        self.state = SessionState.PAUSED
        logger.info("paused (%s)", reason)
        self._event("pause", detail={"reason": reason})
        lanes = [lane for lane in self._lanes if lane.state == DeviceState.RUNNING]
        for lane in lanes:
            lane.state = DeviceState.PAUSED
            lane.device.revoke_lease()
        await asyncio.gather(*(self._zero(lane) for lane in lanes))

    def _resume(self, t: float, reason: str) -> None:
        self.clock.resume()
        self.state = SessionState.RUNNING
        logger.info("resumed (%s)", reason)
        self._event("resume", detail={"reason": reason})
        for lane in self._lanes:
            if lane.state == DeviceState.PAUSED:
                lane.state = DeviceState.RUNNING
                lane.ramp_from = t
                lane.posted = None

    async def _zero(self, lane: Lane) -> None:
        """SafeDevice.stop() after any send in flight: the device at zero, its ramp reset."""
        safe = lane.safe
        if safe is None or not lane.device.is_connected:
            return
        try:
            async with asyncio.timeout(self.timing.stop_timeout_s), lane.lock:
                await safe.stop()
        except LinkError as err:
            self._lost(lane, str(err))
        except (MassagedError, TimeoutError) as err:
            logger.error("%s: stop failed: %s", lane.name, err)
            lane.device.revoke_lease()

    # -- devices ----------------------------------------------------------------------

    async def _worker(self, lane: Lane) -> None:
        """Send the latest request of one device, one at a time."""
        # Each send within apply_timeout_s: one lazily set timer, not one per send.
        deadline = Deadline(self.timing.apply_timeout_s)
        try:
            while True:
                await lane.wake.wait()
                lane.wake.clear()
                if lane.closing:
                    return
                async with lane.lock:
                    request = lane.request
                    safe = lane.safe
                    if lane.state != DeviceState.RUNNING or request is None or safe is None:
                        continue
                    try:
                        with deadline:
                            await safe.apply(request)
                    except LinkError as err:
                        self._lost(lane, str(err))
                    except TimeoutError:
                        self._lost(lane, f"no answer within {deadline.limit:g} s")
                    except (MassagedError, ValueError) as err:
                        # A refusal (overheat, no heater, stop button on its way): once the
                        # device accepts again, it starts from a fresh ramp. Logged once.
                        lane.ramp_from = self.clock.now()
                        lane.posted = None
                        if str(err) not in lane.warned:
                            lane.warned.add(str(err))
                            logger.warning("%s: %s", lane.name, err)
        finally:
            deadline.close()

    def _lost(self, lane: Lane, reason: str) -> None:
        """The link is gone: no more lease; reconnect in the background."""
        lane.device.revoke_lease()
        if self._ending or lane.state in (
            DeviceState.LOST,
            DeviceState.ENDED,
            DeviceState.DROPPED,
            DeviceState.STOPPED,
        ):
            return
        lane.state = DeviceState.LOST
        lane.request = None
        logger.warning("%s: link lost (%s): the session goes on without it", lane.name, reason)
        self._event("link_lost", lane.name, {"reason": reason})
        self._start_reconnect(lane)
        self._wake.set()

    def _start_reconnect(self, lane: Lane) -> None:
        if lane.reconnect is None or lane.reconnect.done():
            lane.reconnect = asyncio.get_running_loop().create_task(
                self._reconnect(lane), name=f"{lane.name}:reconnect"
            )

    async def _reconnect(self, lane: Lane) -> None:
        """Reconnect with backoff; bring the device back only through a fresh ramp from zero."""
        backoff = Backoff(self.timing.reconnect_first_s, self.timing.reconnect_max_s)
        attempt = 0
        while not self._ending:
            attempt += 1
            delay = next(backoff)
            logger.info("%s: reconnect attempt %d in %.1f s", lane.name, attempt, delay)
            await asyncio.sleep(delay)
            if self._ending:
                return
            try:
                await lane.device.connect(timeout=self.timing.connect_timeout_s)
                # A fresh start: the device at zero and the safety layer's ramp from zero.
                async with asyncio.timeout(self.timing.stop_timeout_s), lane.lock:
                    assert lane.safe is not None
                    await lane.safe.stop()
            except (MassagedError, OSError, TimeoutError) as err:
                logger.info("%s: reconnect attempt %d failed: %s", lane.name, attempt, err)
                continue
            if self._ending or lane.state != DeviceState.LOST:
                return
            t = self.clock.now()
            lane.ramp_from = t
            lane.posted = None
            lane.state = DeviceState.PAUSED if self.paused else DeviceState.RUNNING
            logger.info("%s: reconnected after %d attempt(s)", lane.name, attempt)
            self._event("reconnected", lane.name, {"attempts": attempt})
            self._wake.set()
            return

    def _on_device_event(self, lane: Lane, event: DeviceEvent) -> None:
        """A device's own event (called by its driver, on the loop)."""
        if isinstance(event, StopButtonPressed):
            lane.device.revoke_lease()
            if lane.state not in (DeviceState.STOPPED, DeviceState.DROPPED):
                lane.state = DeviceState.ENDED
            lane.request = None
            self._event("stop_button", lane.name, {})
        elif isinstance(event, AutoOff):
            # The pillow's 15-minute auto-off: re-send what it should be doing.
            lane.force = True
            self._event("auto_off", lane.name, {})
        elif isinstance(event, PillowOccupancy):
            self._on_occupancy(lane, event)
        elif isinstance(event, EmsWheelChanged):
            # The safety layer and the driver adopt the wheel as the ceiling; note it.
            self._event("ems_wheel", lane.name, {"a": event.strength_a, "b": event.strength_b})
        elif isinstance(event, DeviceFault):
            # As the wheel: the driver and the safety layer hold the lower value as the
            # ceiling; the session goes on below it, and the fault is on record.
            logger.warning("%s: device fault: %s", lane.name, event.reason)
            detail = {"reason": event.reason, "a": event.ceiling_a, "b": event.ceiling_b}
            self._event("device_fault", lane.name, detail)
        elif isinstance(event, LinkLost):
            self._lost(lane, event.reason or "link lost")
        elif isinstance(event, Overheated):
            self._event("overheated", lane.name, {"temperature": event.temperature})
        elif isinstance(event, LowBattery):
            self._event("low_battery", lane.name, {"percent": event.percent})
        elif isinstance(event, ServiceGap):
            # A gap in service (a stall): the driver zeroed the device and forgot what it
            # held, the safety layer's ramp is back at zero. As after a reconnect, it comes
            # back through a fresh ramp, and no request from before the gap is sent.
            lane.ramp_from = self.clock.now()
            lane.posted = None
            lane.request = None
            self._event("service_gap", lane.name, {"reason": event.reason})
        elif isinstance(event, WatchdogTripped):
            # The device stopped itself: bring it back gently, never with a jump.
            lane.ramp_from = self.clock.now()
            lane.posted = None
            self._event("watchdog_tripped", lane.name, {})
        else:
            self._event(type(event).__name__.lower(), lane.name, {})
        self._wake.set()

    def _gap_in_service(self, late: float) -> None:
        """The loop ran late past a lease: every running device had a gap in service.

        Handled as if each device had found its lease lapsed (whichever side sees a gap
        first, one rule): the driver zeroes it and reports ServiceGap, handled above.
        """
        logger.warning("the session loop ran %.2f s late: every device from zero", late)
        for lane in self._lanes:
            if lane.state == DeviceState.RUNNING:
                lane.device.lapse_lease(f"the session loop ran {late:.2f} s late")

    def _on_occupancy(self, lane: Lane, event: PillowOccupancy) -> None:
        # Re-decide this device's output at once: the safety layer stops kneading on an
        # empty pillow now, not at the next cue (nor only at the 5 s pause).
        lane.force = True
        self._wake.set()
        if event.empty:
            lane.empty_since = self.clock.wall()
            self._event("pillow_empty", lane.name, {})
            return
        lane.empty_since = None
        self._event("pillow_occupied", lane.name, {})
        if PAUSE_PILLOW_EMPTY in self._pause_reasons:
            self._pause_reasons.discard(PAUSE_PILLOW_EMPTY)
            if not self._pause_reasons and self.state == SessionState.PAUSED:
                self._resume(self.clock.now(), PAUSE_PILLOW_EMPTY)

    def _on_violation(self, violation: Violation) -> None:
        self._event(
            "safety",
            violation.device,
            {"rule": violation.rule.value, "detail": violation.detail},
        )
        if violation.rule == Rule.SESSION_TIME:
            self._limit_reached = True
            self._wake.set()

    # -- the end ------------------------------------------------------------------------

    async def _shutdown(self, outcome: Outcome, reason: str) -> None:
        """Stop every device, end every task, record the end; never raises."""
        self._ending = True
        self.state = SessionState.STOPPING
        t = self.clock.now()
        for lane in self._lanes:
            # First of all: should anything below be cut short, every device stops by itself.
            lane.device.revoke_lease()
        tasks = [lane.reconnect for lane in self._lanes if lane.reconnect is not None]
        for task in tasks:
            task.cancel()
        for lane in self._lanes:
            lane.closing = True
            lane.wake.set()
        workers = [lane.worker for lane in self._lanes if lane.worker is not None]
        try:
            if workers:
                _, pending = await asyncio.wait(workers, timeout=self.timing.stop_timeout_s)
                for task in pending:
                    task.cancel()
        finally:
            # Even when cancelled here, no worker is left running.
            for task in workers:
                task.cancel()
            await _reap([*tasks, *workers])
        if outcome != Outcome.EMERGENCY_STOP or not self._estop_done.is_set():
            await asyncio.gather(*(self._final_stop(lane) for lane in self._active_lanes()))
        for lane in self._lanes:
            if lane.remove_listener is not None:
                lane.remove_listener()
            if lane.safe is not None:
                lane.safe.close()
            if lane.state != DeviceState.DROPPED:
                lane.state = DeviceState.STOPPED if lane.state != DeviceState.ENDED else lane.state
        safety = self.safety
        gentler = safety.gentler_presses if safety else 0
        self._event("end", detail={"outcome": outcome.value, "reason": reason}, history=False)
        await self._history.finish(
            outcome,
            gentler,
            {
                "reason": reason,
                "elapsed": round(t, 3),
                "devices": {lane.name: lane.state.value for lane in self._lanes},
                "violations": len(safety.violations) if safety else 0,
            },
        )
        self._result = SessionResult(
            outcome=outcome,
            reason=reason,
            elapsed=t,
            gentler_presses=gentler,
            session_id=self._history.session_id,
            audience=self.limits.audience,
            devices={lane.name: lane.state for lane in self._lanes},
            violations=tuple(safety.violations) if safety else (),
            dropped=tuple(self._dropped),
        )
        while self._controls:
            # An emergency stop asked for while we were stopping: let it finish.
            controls = list(self._controls)
            await asyncio.wait(controls, timeout=self.timing.stop_timeout_s)
            for task in controls:
                task.cancel()
                self._controls.discard(task)
            await _reap(controls)
        self.state = SessionState.ENDED
        logger.info("session ended: %s (%s) at %.1f s", outcome.value, reason, t)
        self.done.set()

    async def _final_stop(self, lane: Lane) -> None:
        lane.device.revoke_lease()
        if not lane.device.is_connected:
            return
        try:
            async with asyncio.timeout(self.timing.stop_timeout_s):
                if lane.safe is not None:
                    await lane.safe.stop()
                else:
                    await lane.device.stop()
        except (MassagedError, TimeoutError) as err:
            logger.error("%s: final stop failed: %s", lane.name, err)

    # -- events --------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        device: str | None = None,
        detail: dict[str, Any] | None = None,
        *,
        history: bool = True,
    ) -> None:
        t = self.clock.now()
        event = RunnerEvent(round(t, 3), kind, device, dict(detail or {}))
        if history:
            row = dict(event.detail)
            if device is not None:
                row["device"] = device
            self._history.add(t, kind, row)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a faulty listener must not take the session down
                logger.exception("session listener failed")


def _unit(value: float) -> float:
    """value clipped to 0..1, NaN as 0 (called several times a pass: no calls inside)."""
    if value >= 1.0:
        return 1.0
    if value > 0.0:
        return value
    return 0.0  # at or below zero, or NaN


async def _reap(tasks: list[asyncio.Task[None]]) -> None:
    """Await tasks that are done or cancelled, logging any failure."""
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            if not task.done():
                raise  # we were cancelled while waiting, not only the task we awaited
        except Exception:
            logger.exception("task %s failed", task.get_name())
