"""The words a profile is made of: the built-in profile's name, audiences, sides, contraindications.

Split from :mod:`controller.profiles` (pydantic models, the device kinds' table)
so that the command line can offer these as choices without loading the models:
``massaged profiles set --audience nosuch``, ``--help`` and ``completion``
start without them. controller.profiles re-exports every name here; import
them from there, except in a module that must start fast.

Standard library only (enum): keep it so.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

DEFAULT_PROFILE_NAME = "default"
"""The built-in profile, used when no profile is named."""


class Audience(StrEnum):
    """Adult or child: decides the session length limit (30 or 15 minutes)."""

    ADULT = "adult"
    CHILD = "child"


SESSION_LIMITS_S: Mapping[Audience, float] = {Audience.ADULT: 1800.0, Audience.CHILD: 900.0}
"""The method: up to 30 minutes for adults, up to 15 for children (controller.safety holds it)."""

HEATER_LIMITS_S: Mapping[Audience, float] = {Audience.ADULT: 1200.0, Audience.CHILD: 600.0}
"""Heater on-time per session: 20 minutes adult, 10 child (see controller.safety's module doc)."""


class PainfulSide(StrEnum):
    """The side that hurts; the method massages the healthy side first."""

    LEFT = "left"
    RIGHT = "right"
    NONE = "none"


class Contraindication(StrEnum):
    """Conditions that rule out a session (or, for the EMS-only ones, the butterfly)."""

    FEVER = "fever"
    INFLAMMATION = "inflammation"
    SKIN_DISEASE = "skin_disease"
    BLOOD_DISEASE = "blood_disease"
    BONE_TUBERCULOSIS = "bone_tuberculosis"
    OSTEOMYELITIS = "osteomyelitis"
    CHRONIC_EXACERBATION = "chronic_exacerbation"
    HEART_DISEASE = "heart_disease"
    HEMOSTASIS_DISORDER = "hemostasis_disorder"
    THROMBOSIS = "thrombosis"
    THROMBOPHLEBITIS = "thrombophlebitis"
    DIABETES = "diabetes"
    TUMOUR = "tumour"
    HYPERTENSION = "hypertension"
    INFECTION = "infection"
    ORGAN_FAILURE = "organ_failure"
    NEUROPSYCHIATRIC_DISORDER = "neuropsychiatric_disorder"
    INTERVERTEBRAL_HERNIA = "intervertebral_hernia"
    # EMS-only: not in the massage method, they block only the butterfly.
    IMPLANTED_ELECTRONICS = "implanted_electronics"
    PREGNANCY = "pregnancy"
    EPILEPSY = "epilepsy"
