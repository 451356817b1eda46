"""Preparing a session: the one way ``massaged run`` and the daemon go from a program to a runner.

Both front ends get here with a program, a profile and connected devices;
from there the checks and the order are the same whichever way the session
was asked for: the person's confirmations (controller.readiness, the
authority, asked again even where the command line asked on a terminal), the
profile's contraindications, the registry's caps as per-device limits, the
program rendered onto the devices, and a plan longer than the session limit
refused before anything moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from controller.profiles import Profile, painful_body_side
from controller.readiness import Confirm, Question, check_ready
from controller.safety import SafetyLimits
from controller.session import SessionRunner, check_fits, check_profile
from controller.store import Store
from devices.drivers.base import Device
from devices.errors import MassagedError
from programs.model import Program

logger = logging.getLogger(__name__)

__all__ = ["device_limits", "prepare_session"]

Devices = Mapping[str, Device] | Callable[[], Mapping[str, Device]]
"""The connected devices by name, or what finds them once the person's confirmations hold."""


def device_limits(
    profile: Profile, caps: Mapping[str, Mapping[str, float] | None]
) -> dict[str, SafetyLimits]:
    """Per-device limits for the devices with registry caps (device name -> caps)."""
    return {
        name: SafetyLimits.from_profile(profile, device_caps=dict(device_caps))
        for name, device_caps in caps.items()
        if device_caps
    }


async def prepare_session(
    program: Program,
    profile: Profile,
    devices: Devices,
    *,
    store: Store | None,
    confirmed: Callable[[Confirm], bool],
    caps: Mapping[str, Mapping[str, float] | None] | None = None,
    speed: float = 1.0,
    scale: float = 1.0,
    simulated: bool = False,
    field_hint: bool = True,
    wording: Callable[[Question], str] | None = None,
) -> SessionRunner:
    """A runner for program on devices, ready to run; SafetyError (or ConfigError) when the
    session is refused, before anything moves.

    confirmed tells whether a confirmation was given (controller.readiness); caps are the
    registry's, by device name; field_hint names the run request's field in a refusal,
    wording (when given) words that refusal instead (controller.readiness.check_ready).
    """
    # First of all: is today a day for a session, and is now the time?
    check_ready(
        profile, store, confirmed, simulated=simulated, field_hint=field_hint, wording=wording
    )
    found = devices() if callable(devices) else devices
    if not found:
        raise MassagedError("none of the devices is connected")
    # Contraindications, before the (slow) rendering: refused here with the reason.
    check_profile(profile, {d.capabilities.kind for d in found.values()}, program.audience)
    from programs.render import render

    # Rendering many devices takes a while: off the loop, so a stop is never kept waiting.
    plan = await asyncio.to_thread(
        render,
        program,
        {name: d.capabilities for name, d in found.items()},
        painful_side=painful_body_side(profile),
    )
    runner = SessionRunner(
        plan,
        found,
        profile=profile,
        store=store,
        speed=speed,
        scale=scale,
        device_limits=device_limits(profile, {n: c for n, c in (caps or {}).items() if n in found}),
        simulated=simulated,
    )
    # A program that does not fit the limit is refused before anything moves.
    check_fits(plan, runner.limits)
    return runner
