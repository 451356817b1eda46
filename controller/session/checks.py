"""Before a session: which devices a profile leaves out, and whether a plan fits the limit."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from controller.profiles import EMS_KINDS, Audience, Profile, check_contraindications
from controller.safety import SafetyLimits
from devices.capabilities import DeviceKind
from devices.errors import MassagedError, SafetyError
from programs.timeline import SessionPlan

logger = logging.getLogger(__name__)

NO_EMS_FOR_A_CHILD = "no EMS for a child (massaged's rule)"


def check_profile(
    profile: Profile, kinds: Collection[DeviceKind], audience: str | None = None
) -> frozenset[DeviceKind]:
    """The kinds left out (an EMS-only contraindication, or EMS on a child: the profile's
    or the program's audience); SafetyError when the session is refused."""
    result = check_contraindications(profile, kinds)
    general = [f for f in result.findings if not f.blocks <= EMS_KINDS]
    if result.session_blocked or general:
        raise SafetyError(
            f"session refused for profile {profile.name!r}: " + "; ".join(result.messages)
        )
    for finding in result.findings:
        logger.warning("the butterfly is left out: %s", finding.message)
    dropped = result.blocked_kinds
    if Audience.CHILD in (profile.audience, audience) and EMS_KINDS & set(kinds):
        logger.warning("the butterfly is left out: %s", NO_EMS_FOR_A_CHILD)
        dropped |= EMS_KINDS & set(kinds)
    if dropped and dropped >= set(kinds):
        raise SafetyError(
            f"session refused for profile {profile.name!r}: no device is left "
            f"({NO_EMS_FOR_A_CHILD})"
        )
    return dropped


def check_fits(plan: SessionPlan, limits: SafetyLimits) -> None:
    """SafetyError, naming an alternative, when the plan is longer than the session limit.

    A program is refused up front rather than cut in the middle: its last stages (the
    relaxation, the final stroking) would never play.
    """
    if plan.duration <= limits.session_limit_s + 1e-6:
        return
    who = "a child's" if limits.audience == Audience.CHILD else "an adult's"
    message = (
        f"{plan.program_id} lasts {plan.duration / 60:.1f} min, longer than {who} session "
        f"limit of {limits.session_limit_s / 60:g} min: it would be cut before its end"
    )
    alternative = _program_for(limits.audience, plan.program_id)
    if alternative is not None:
        message += f"; run {alternative} instead"
    raise SafetyError(message)


def _program_for(audience: Audience, program_id: str) -> str | None:
    """A built-in program for this audience to suggest instead ("<id>-child" first)."""
    from programs import library

    candidates = []
    for program_ref in library.builtin_ids():
        try:
            program = library.get(program_ref).program
        except MassagedError:
            continue
        if program.audience.value == audience.value:
            candidates.append(program.id)
    preferred = f"{program_id}-{audience.value}"
    if preferred in candidates:
        return preferred
    return candidates[0] if candidates else None


def limits_for(
    profile: Profile, audience: str = Audience.ADULT, device_caps: Mapping[str, float] | None = None
) -> SafetyLimits:
    """The session's limits: the profile's, and a child's time limit for a child's program."""
    limits = SafetyLimits.from_profile(profile, device_caps=device_caps)
    if audience == Audience.CHILD and limits.audience != Audience.CHILD:
        child = SafetyLimits(
            audience=Audience.CHILD,
            caps=limits.caps,
            ems_max_raise_per_100ms=limits.ems_max_raise_per_100ms,
        )
        limits = limits.stricter(child)
    return limits
