"""A session run from a Python script: the same checks, runner and safety layer as ``massaged run``.

:func:`prepare_program` prepares it as the command line and the daemon do
(controller.session_setup.prepare_session), so it refuses the same things: a
postponement or an unconfirmed question (controller.readiness), a
contraindication (check_profile), a plan longer than the session limit
(check_fits). It returns a :class:`~controller.session.SessionRunner` that has
moved nothing yet; every output then goes through the one safety layer (the
profile's caps, the EMS ramp, the burst and heater rules, the time limit).
:func:`run_program` plays it to its end. There is no way around those rules
here: the caller confirms, as a person on the command line does, and may only
make things gentler (scale).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from controller.profiles import DEFAULT_PROFILE, Profile
from controller.readiness import Confirm, Question
from controller.session import RunnerListener, SessionResult, SessionRunner
from controller.session_setup import prepare_session
from controller.store import Store
from devices.drivers.base import Device
from devices.errors import ConfigError, LinkError
from programs.model import Program

logger = logging.getLogger(__name__)


async def prepare_program(
    program: str | Path | Program,
    devices: Mapping[str, Device],
    *,
    profile: Profile = DEFAULT_PROFILE,
    well_today: bool = False,
    accept_caution: bool = False,
    override_spacing: bool = False,
    scale: float = 1.0,
    speed: float = 1.0,
    simulated: bool = False,
    store: Store | None = None,
) -> SessionRunner:
    """A checked session of program on connected devices (by name), ready to run.

    program: a built-in id, a TOML file or a Program. well_today, accept_caution,
    override_spacing: what the person confirmed (SafetyError naming the one missing).
    scale: overall intensity 0..1, under the profile's caps. speed: plan time runs this
    many times faster; simulated devices only (simulated=True, which also keeps the
    session out of any course). store: record it in this history (None: nowhere).
    """
    if not devices:
        raise ConfigError("a session needs at least one device")
    not_connected = [name for name, device in devices.items() if not device.is_connected]
    if not_connected:
        raise LinkError(f"not connected: {', '.join(not_connected)}; connect them first")
    if not math.isfinite(scale) or not 0.0 <= scale <= 1.0:
        raise ConfigError(f"scale must be 0..1, not {scale}")
    if not math.isfinite(speed) or speed < 1.0:
        raise ConfigError(f"speed must be 1 or more, not {speed}")
    if speed != 1.0 and not simulated:
        raise ConfigError("speed only works on simulated devices: real ones run in real time")
    if not isinstance(program, Program):
        from programs.library import resolve

        program = resolve(str(program)).program
    given = {
        Confirm.WELL_TODAY: well_today,
        Confirm.ACCEPT_CAUTION: accept_caution,
        Confirm.OVERRIDE_SPACING: override_spacing,
    }
    return await prepare_session(
        program,
        profile,
        devices,
        store=store,
        confirmed=lambda confirm: given.get(confirm, False),
        speed=speed,
        scale=scale,
        simulated=simulated,
        wording=_refusal,
    )


def _refusal(question: Question) -> str:
    """controller.readiness's refusal, naming this function's argument, not a flag."""
    return f"not started: {question.reason}; to confirm, pass {question.confirm.value}=True"


async def run_program(
    program: str | Path | Program,
    devices: Mapping[str, Device],
    *,
    profile: Profile = DEFAULT_PROFILE,
    well_today: bool = False,
    accept_caution: bool = False,
    override_spacing: bool = False,
    scale: float = 1.0,
    speed: float = 1.0,
    simulated: bool = False,
    store: Store | None = None,
    on_event: RunnerListener | None = None,
) -> SessionResult:
    """Play a program on connected devices to its end; every device is stopped on return.

    The arguments are prepare_program's; on_event is called with every session event
    (steps, pauses, device events). Cancelling the call stops the session: the devices
    are stopped before the cancellation goes on.
    """
    runner = await prepare_program(
        program,
        devices,
        profile=profile,
        well_today=well_today,
        accept_caution=accept_caution,
        override_spacing=override_spacing,
        scale=scale,
        speed=speed,
        simulated=simulated,
        store=store,
    )
    if on_event is not None:
        runner.add_listener(on_event)
    return await runner.run()
