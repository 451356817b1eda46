"""A massage program as validated data: an ordered list of method steps.

The limits checked here come from the cervical-collar massage method (session
up to 30 minutes for adults and 15 for children, vibration up to 15 s, pressing
with gradually increasing force, the counts it gives) and from massaged's own
product decisions (a ceiling on children's intensities). A program is
device-independent: programs/render.py turns it into device cues, and the
loader checks the rendered plan too (programs/plan_checks.py: vibration in
bursts).

A repetition is one movement: a counted step renders as exactly its count of
rises, peaks and falls back to rest on every output it plays
(programs/movements.py counts them back).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from devices.capabilities import DeviceKind, Place
from programs.ids import SLUG_PATTERN

logger = logging.getLogger(__name__)


class Technique(StrEnum):
    """A classical massage technique of the method."""

    STROKING = "stroking"
    RUBBING = "rubbing"
    PRESSING = "pressing"
    """Pressing with gradually increasing force (the method's "push-ups")."""
    KNEADING = "kneading"
    CIRCULAR = "circular"
    VIBRATION = "vibration"
    TAPPING = "tapping"
    """One repetition is one series of light taps, then a pause."""
    REST = "rest"


class Zone(StrEnum):
    """Where on the body a step works; "neck" is always the back of the neck."""

    NECK = "neck"
    SHOULDERS = "shoulders"
    """The trapezius muscles and the shoulder joints."""
    UPPER_BACK = "upper_back"
    COLLAR_ZONE = "collar_zone"
    """Back of the neck, shoulders and upper back together."""


class StepSide(StrEnum):
    """Which side a step works on; painful/healthy are resolved from a profile at render time."""

    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"
    PAINFUL = "painful"
    HEALTHY = "healthy"
    TO_PAINFUL = "to_painful"
    """One smooth transition: the healthy side fades out while the painful side fades in."""


class Audience(StrEnum):
    """Who a program is for; the method allows children shorter sessions."""

    ADULT = "adult"
    CHILD = "child"


ZONE_PLACES: Final[dict[Zone, tuple[Place, ...]]] = {
    Zone.NECK: (Place.NECK,),
    Zone.SHOULDERS: (Place.SHOULDER,),
    Zone.UPPER_BACK: (Place.UPPER_BACK,),
    Zone.COLLAR_ZONE: (Place.NECK, Place.SHOULDER, Place.UPPER_BACK),
}
"""The device places each zone covers, from the head downwards."""

REPETITION_S: Final[dict[Technique, float]] = {
    Technique.STROKING: 5.0,
    Technique.RUBBING: 6.0,
    Technique.PRESSING: 8.0,
    Technique.KNEADING: 10.0,
    Technique.CIRCULAR: 8.0,
    Technique.VIBRATION: 5.0,
    Technique.TAPPING: 5.0,
    Technique.REST: 5.0,
}
"""Nominal seconds of one repetition (one movement and the pause after it) of each technique."""

MOVEMENT_NAMES: Final[dict[Technique, str]] = {
    Technique.STROKING: "strokes",
    Technique.RUBBING: "rubs",
    Technique.PRESSING: "presses",
    Technique.KNEADING: "kneadings",
    Technique.CIRCULAR: "circles",
    Technique.VIBRATION: "bursts",
    Technique.TAPPING: "tapping series",
    Technique.REST: "rests",
}
"""What one repetition of each technique is called in plans."""

MAX_SESSION_MIN: Final[dict[Audience, float]] = {Audience.ADULT: 30.0, Audience.CHILD: 15.0}
"""The method: cervical-collar massage takes up to 30 minutes for adults, 15 for children."""

MAX_VIBRATION_S: Final = 15.0
"""The method: "Perform vibration reception - up to 15 seconds"."""

CHILD_MAX_INTENSITY: Final = 0.6
"""No step of a child program above this intensity: a product decision of massaged.

The method gives children a shorter session (up to 15 minutes) and says a
massage must never hurt; it gives no intensity figure for children. The
ceiling is ours, chosen to keep children's work gentle.
"""

PILLOW_ZONES: Final = frozenset({Zone.NECK, Zone.COLLAR_ZONE})
"""The pillow's nodes sit under the neck: it plays only zones that include the neck."""

MIN_STEP_S: Final = 1.0
"""The shortest step: below a second no device can rise to a level and fall back."""

MIN_SESSION_MIN: Final = 1.0
"""The shortest max_duration, in minutes: a smaller one is a slip (seconds for minutes)."""

COUNT_PATTERN: Final = r"^[0-9]+(-[0-9]+)?$"
"""A count as the method gives it: "7" or a range "5-7"."""


def parse_count(text: str) -> tuple[int, int]:
    """ "5-7" -> (5, 7); "7" -> (7, 7)."""
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def fmt_number(value: float) -> str:
    """A number as a person writes it: 20, not 20.0; 0.35, not 0.35000000000000003."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _rule(field: str, detail: str, *, step: int | None = None) -> PydanticCustomError:
    """A broken method rule, carrying the field (and step) it concerns for the message."""
    ctx: dict[str, Any] = {"field": field, "detail": detail}
    if step is not None:
        ctx["step"] = step
    return PydanticCustomError("program_rule", "{detail}", ctx)


class Step(BaseModel):
    """One step of a program: a technique on a zone, for a count or a time, at an intensity."""

    # defer_build: built when a program is first validated (Program builds it with its
    # own), not by every process that imports this module for its names and tables.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "oneOf": [{"required": ["repetitions"]}, {"required": ["duration_s"]}],
        },
        defer_build=True,
    )

    technique: Technique = Field(
        description='The massage technique; "pressing" means pressing with gradually '
        'increasing force, "rest" plays nothing.'
    )
    zone: Zone = Field(
        default=Zone.COLLAR_ZONE,
        description='Where it works; "neck" is the back of the neck, "collar_zone" is '
        "neck, shoulders and upper back together.",
    )
    side: StepSide = Field(
        default=StepSide.BOTH,
        description='left, right or both; "healthy"/"painful" follow the profile\'s painful '
        "side (left then right when none is known).",
    )
    repetitions: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=100,
        description="How many times: each repetition is one movement (a rise, a peak, a "
        "fall back to rest) and takes the technique's nominal time; give this or duration_s.",
    )
    method_count: str | None = Field(
        default=None,
        pattern=COUNT_PATTERN,
        description='The count the method gives, "7" or a range "5-7"; repetitions must '
        "lie within it.",
    )
    duration_s: float | None = Field(
        default=None,
        strict=True,
        ge=MIN_STEP_S,
        le=1800,
        description="How long in seconds; give this or repetitions.",
    )
    intensity: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=1,
        description="Nominal intensity 0..1 (the profile scales and caps it); "
        "or give start_intensity and end_intensity.",
    )
    start_intensity: float | None = Field(
        default=None, strict=True, ge=0, le=1, description="Intensity at the start of a ramp, 0..1."
    )
    end_intensity: float | None = Field(
        default=None, strict=True, ge=0, le=1, description="Intensity at the end of a ramp, 0..1."
    )
    devices: tuple[DeviceKind, ...] | None = Field(
        default=None,
        min_length=1,
        description="Only these kinds of device play the step; the others rest. "
        "Default: every device that can.",
    )
    heat: bool = Field(
        default=False, strict=True, description="Warm with the heater where one is fitted."
    )
    label: str = Field(default="", max_length=80, description="A short name shown in plans.")
    cite: str = Field(default="", description="The sentence of the method this step follows.")

    @model_validator(mode="after")
    def _check_method(self) -> Step:
        """Cross-field rules: count or time, intensity or ramp, the method's limits."""
        if (self.repetitions is None) == (self.duration_s is None):
            both = self.repetitions is not None
            raise _rule(
                "repetitions" if both else "duration_s",
                "give repetitions or duration_s, not both"
                if both
                else "give either repetitions (a count) or duration_s (seconds)",
            )
        ramp = (self.start_intensity, self.end_intensity)
        if self.technique is Technique.REST:
            if self.intensity or any(v is not None for v in ramp):
                raise _rule("intensity", "a rest plays nothing: leave intensity out")
            if self.heat:
                raise _rule(
                    "heat", "a rest plays nothing: warm during a light step (e.g. stroking) instead"
                )
        elif self.intensity is not None and any(v is not None for v in ramp):
            raise _rule(
                "intensity", "give intensity, or start_intensity and end_intensity, not both"
            )
        elif self.intensity is None and (ramp[0] is None or ramp[1] is None):
            missing = "end_intensity" if ramp[0] is not None else "start_intensity"
            if ramp == (None, None):
                missing = "intensity"
            raise _rule(
                missing,
                "missing: give intensity (0..1), or start_intensity and end_intensity for a ramp",
            )
        if self.method_count is not None:
            low, high = parse_count(self.method_count)
            if low > high:
                raise _rule("method_count", f"{self.method_count}: the range runs backwards")
            if self.repetitions is None:
                raise _rule(
                    "method_count",
                    "a count from the method needs repetitions (one movement each), not duration_s",
                )
            if not low <= self.repetitions <= high:
                raise _rule(
                    "repetitions",
                    f"{self.repetitions} is outside the method's count {self.method_count}",
                )
        if (
            self.technique is Technique.PRESSING
            and self.start_intensity is not None
            and self.end_intensity is not None
            and self.end_intensity < self.start_intensity
        ):
            raise _rule(
                "end_intensity",
                f"{fmt_number(self.end_intensity)} is below start_intensity "
                f"{fmt_number(self.start_intensity)}; pressing means pressing with "
                "gradually increasing force",
            )
        if self.technique is Technique.VIBRATION and self.duration > MAX_VIBRATION_S:
            if self.duration_s is not None:
                field, what = "duration_s", fmt_number(self.duration_s)
            else:
                field = "repetitions"
                what = (
                    f"{self.repetitions} × {fmt_number(REPETITION_S[self.technique])} s = "
                    f"{fmt_number(self.duration)} s"
                )
            raise _rule(
                field,
                f"{what} is more than the method's {fmt_number(MAX_VIBRATION_S)} s for vibration",
            )
        if self.devices is not None:
            if len(set(self.devices)) != len(self.devices):
                raise _rule("devices", "each kind of device at most once")
            if set(self.devices) == {DeviceKind.PILLOW} and self.zone not in PILLOW_ZONES:
                raise _rule(
                    "devices",
                    f"the pillow only reaches the neck, so zone {self.zone.value} would play "
                    "on nothing; use zone neck or collar_zone, or add belt or butterfly",
                )
        return self

    @property
    def duration(self) -> float:
        """Seconds the step takes."""
        if self.duration_s is not None:
            return self.duration_s
        assert self.repetitions is not None  # the validator guarantees one of the two
        return self.repetitions * REPETITION_S[self.technique]

    @property
    def movement_count(self) -> int:
        """How many movements the step renders: its repetitions, or what fits its duration.

        A timed step plays as many whole movements of the technique's nominal
        time as fit (at least one), each stretched to fill the step; a timed
        vibration is one burst; a rest has none.
        """
        if self.technique is Technique.REST:
            return 0
        if self.repetitions is not None:
            return self.repetitions
        if self.technique is Technique.VIBRATION:
            return 1
        return max(1, math.floor(self.duration / REPETITION_S[self.technique] + 1e-9))

    @property
    def is_ramp(self) -> bool:
        """True when the intensity changes over the step."""
        return self.intensity is None and self.start_intensity is not None

    def intensity_at(self, fraction: float) -> float:
        """The nominal intensity at a fraction 0..1 of the step (linear along a ramp)."""
        if self.intensity is not None:
            return self.intensity
        if self.start_intensity is None or self.end_intensity is None:
            return 0.0
        x = min(1.0, max(0.0, fraction))
        return self.start_intensity + (self.end_intensity - self.start_intensity) * x

    @property
    def peak_intensity(self) -> float:
        """The highest intensity the step asks for."""
        return max(self.intensity_at(0.0), self.intensity_at(1.0))

    def describe_intensity(self) -> str:
        """The intensity as text: "0.5" or "0.4→0.7"."""
        if self.technique is Technique.REST:
            return "-"
        if self.is_ramp:
            return f"{fmt_number(self.intensity_at(0.0))}→{fmt_number(self.intensity_at(1.0))}"
        return fmt_number(self.intensity_at(0.0))

    def describe_count(self) -> str:
        """The movements as text: "7 strokes", "6 kneadings (method 5–7)", "" for a rest."""
        if self.technique is Technique.REST:
            return ""
        n = self.movement_count
        name = MOVEMENT_NAMES[self.technique]
        text = f"{n} {name.removesuffix('s') if n == 1 and name.endswith('s') else name}"
        if self.method_count is not None:
            text += f" (method {self.method_count.replace('-', '–')})"
        return text

    def describe_amount(self) -> str:
        """The count and time as text: "7 strokes × 5 s (method 7)" or "40 s: 6 rubs"."""
        if self.technique is Technique.REST:
            return f"{fmt_number(self.duration)} s"
        if self.repetitions is not None:
            count, _, method = self.describe_count().partition(" (")
            per = fmt_number(REPETITION_S[self.technique])
            return f"{count} × {per} s" + (f" ({method}" if method else "")
        return f"{fmt_number(self.duration)} s: {self.describe_count()}"


class Program(BaseModel):
    """A massage program: metadata and an ordered list of steps played end to end."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        title="massaged program",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": "A massage program for massaged (TOML). See docs/programs.md.",
        },
        defer_build=True,  # as Step's
    )

    id: str = Field(
        pattern=SLUG_PATTERN,
        max_length=64,
        description="A slug (lower-case letters, digits, dashes); also the file name.",
    )
    title: str = Field(min_length=1, max_length=100, description="A human title.")
    audience: Audience = Field(description="adult or child.")
    max_duration: float = Field(
        strict=True,
        ge=MIN_SESSION_MIN,
        le=MAX_SESSION_MIN[Audience.ADULT],
        description="Minutes the session may take at most: up to 30 for adults, "
        "15 for children (the method); the steps must fit.",
    )
    description: str = Field(min_length=1, description="What the program is for.")
    cites: str = Field(min_length=1, description="The part of the method the program mirrors.")
    frequency: str | None = Field(
        default=None, description='How often to use it, e.g. "2-3 times a day".'
    )
    steps: tuple[Step, ...] = Field(min_length=1, description="The steps, played in order.")

    @model_validator(mode="after")
    def _check_limits(self) -> Program:
        """The method's session limits, and massaged's intensity ceiling for children."""
        limit = MAX_SESSION_MIN[self.audience]
        if self.max_duration > limit:
            who = "children" if self.audience is Audience.CHILD else "adults"
            raise _rule(
                "max_duration",
                f"{fmt_number(self.max_duration)} min is more than the method's "
                f"{fmt_number(limit)} min for {who}",
            )
        total = self.total_duration
        if total > self.max_duration * 60 + 1e-6:
            raise _rule(
                "max_duration",
                f"the steps take {fmt_number(round(total / 60, 2))} min "
                f"({fmt_number(round(total, 1))} s), more than max_duration "
                f"{fmt_number(self.max_duration)} min",
            )
        if self.audience is Audience.CHILD:
            for i, step in enumerate(self.steps):
                if step.peak_intensity > CHILD_MAX_INTENSITY + 1e-9:
                    if step.intensity is not None:
                        field = "intensity"
                    elif (step.start_intensity or 0.0) > CHILD_MAX_INTENSITY:
                        field = "start_intensity"
                    else:
                        field = "end_intensity"
                    raise _rule(
                        field,
                        f"{fmt_number(step.peak_intensity)} is more than "
                        f"{fmt_number(CHILD_MAX_INTENSITY)}, the most a child program may ask "
                        "(a product decision of massaged, not a figure from the method)",
                        step=i,
                    )
        return self

    @property
    def total_duration(self) -> float:
        """Seconds all the steps take together."""
        return math.fsum(step.duration for step in self.steps)


def program_schema() -> dict[str, Any]:
    """The published JSON schema of a program file (programs/schema.json)."""
    return Program.model_json_schema(mode="validation")


@dataclass(frozen=True, slots=True)
class ProgramIssue:
    """One thing wrong in a program: where (0-based step, field, TOML line) and what."""

    message: str
    step: int | None = None
    technique: str | None = None
    field: str | None = None
    line: int | None = None
