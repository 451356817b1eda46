"""User profiles: who is massaged, how strongly, and what rules a session out.

A profile holds the audience (adult or child: the method allows up to 30
minutes for adults and 15 for children), intensity caps per device kind as
fractions of the device maximum, the EMS ramp, the painful side (the method
starts on the healthy side) and the user's contraindications.

Contraindications come from the method's two lists (the general list under
"Benefits and contraindications" and the "universal contraindications for
massage"); any of them blocks the whole session. Three more are not in the
method but belong to electrical muscle stimulation: implanted electronics
(a pacemaker and the like), pregnancy and epilepsy. They block only the EMS
butterfly; the belt and the pillow may still run.

A contraindication can also be recorded *for today* only (a cold, a bad
night): it postpones every session of that local day and lapses by itself the
next day. A profile may say that the person has a complex case of
osteochondrosis: the method warns that hardware massage does not suit every
such case, so every session then shows the caution and asks for a confirmation
(controller.readiness).

The built-in profile "default" is an adult with caps belt 0.8, pillow 1.0 and
butterfly 0.5: the belt's top levels are harsh on the neck, the pillow's
three speeds are all gentle, and EMS starts at half strength because the
sensation differs a lot from person to person.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

# The enums and the default name live in a light module (the command line offers them as
# choices without loading the models); they are re-exported from here.
from controller.profile_terms import DEFAULT_PROFILE_NAME as DEFAULT_PROFILE_NAME
from controller.profile_terms import Audience as Audience
from controller.profile_terms import Contraindication as Contraindication
from controller.profile_terms import PainfulSide as PainfulSide
from devices.capabilities import DeviceKind, Side
from devices.errors import ConfigError

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
EMS_MAX_RAISE_PER_100MS = 5
"""EB1 daemon rule 2: raise a strength by at most 5 per 100 ms."""


_METHOD = "method: contraindications"
_METHOD_UNIVERSAL = "method: universal contraindications for massage"
_EMS = "EMS safety: blocks only the EMS butterfly"


@dataclass(frozen=True, slots=True)
class ContraindicationInfo:
    """Why a contraindication applies, where the rule comes from, and what it blocks."""

    reason: str
    source: str
    ems_only: bool = False


CONTRAINDICATIONS: Mapping[Contraindication, ContraindicationInfo] = {
    Contraindication.FEVER: ContraindicationInfo(
        "massage is contraindicated while you have a fever or high temperature", _METHOD
    ),
    Contraindication.INFLAMMATION: ContraindicationInfo(
        "massage is contraindicated during an inflammatory process", _METHOD
    ),
    Contraindication.SKIN_DISEASE: ContraindicationInfo(
        "massage is contraindicated with a skin disease or local skin damage", _METHOD
    ),
    Contraindication.BLOOD_DISEASE: ContraindicationInfo(
        "massage is contraindicated with blood diseases such as hemophilia", _METHOD
    ),
    Contraindication.BONE_TUBERCULOSIS: ContraindicationInfo(
        "massage is contraindicated with tuberculosis of bones and joints", _METHOD
    ),
    Contraindication.OSTEOMYELITIS: ContraindicationInfo(
        "massage is contraindicated with osteomyelitis", _METHOD
    ),
    Contraindication.CHRONIC_EXACERBATION: ContraindicationInfo(
        "massage is not performed while a chronic disease is exacerbated", _METHOD
    ),
    Contraindication.HEART_DISEASE: ContraindicationInfo(
        "massage is contraindicated with heart disease", _METHOD
    ),
    Contraindication.HEMOSTASIS_DISORDER: ContraindicationInfo(
        "massage is contraindicated with a disorder of hemostasis (blood clotting)", _METHOD
    ),
    Contraindication.THROMBOSIS: ContraindicationInfo(
        "massage is contraindicated with thrombosis", _METHOD
    ),
    Contraindication.THROMBOPHLEBITIS: ContraindicationInfo(
        "massage is contraindicated with thrombophlebitis", _METHOD_UNIVERSAL
    ),
    Contraindication.DIABETES: ContraindicationInfo(
        "massage is contraindicated with diabetes", _METHOD
    ),
    Contraindication.TUMOUR: ContraindicationInfo(
        "massage is contraindicated with tumours", _METHOD
    ),
    Contraindication.HYPERTENSION: ContraindicationInfo(
        "massage is contraindicated with hypertension (high blood pressure)", _METHOD_UNIVERSAL
    ),
    Contraindication.INFECTION: ContraindicationInfo(
        "massage is contraindicated during any infectious process", _METHOD_UNIVERSAL
    ),
    Contraindication.ORGAN_FAILURE: ContraindicationInfo(
        "massage is contraindicated with functional failure of an organ", _METHOD_UNIVERSAL
    ),
    Contraindication.NEUROPSYCHIATRIC_DISORDER: ContraindicationInfo(
        "massage is contraindicated with neuropsychiatric disorders", _METHOD_UNIVERSAL
    ),
    Contraindication.INTERVERTEBRAL_HERNIA: ContraindicationInfo(
        "massage is contraindicated with an intervertebral hernia", _METHOD_UNIVERSAL
    ),
    Contraindication.IMPLANTED_ELECTRONICS: ContraindicationInfo(
        "electrical stimulation can disturb a pacemaker or other implanted electronics",
        _EMS,
        ems_only=True,
    ),
    Contraindication.PREGNANCY: ContraindicationInfo(
        "electrical stimulation is not used during pregnancy", _EMS, ems_only=True
    ),
    Contraindication.EPILEPSY: ContraindicationInfo(
        "electrical stimulation can trigger a seizure in epilepsy", _EMS, ems_only=True
    ),
}

EMS_KINDS: frozenset[DeviceKind]
"""The device kinds an EMS-only contraindication blocks (and a child never gets).

Found in the device kinds' table (devices.kinds) on first use, not at import: that
table loads every kind's output models, which reading or listing a profile does
without (a command's start-up). See __getattr__.
"""


def _ems_kinds() -> frozenset[DeviceKind]:
    found: frozenset[DeviceKind] | None = globals().get("EMS_KINDS")
    if found is None:
        from devices.kinds import KINDS

        found = frozenset(k for k, spec in KINDS.items() if spec.ems)
        globals()["EMS_KINDS"] = found
    return found


def __getattr__(name: str) -> frozenset[DeviceKind]:
    """EMS_KINDS, made on first use (PEP 562)."""
    if name == "EMS_KINDS":
        return _ems_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ALIASES: Mapping[str, Contraindication] = {
    "high_temperature": Contraindication.FEVER,
    "temperature": Contraindication.FEVER,
    "inflammatory_process": Contraindication.INFLAMMATION,
    "skin_damage": Contraindication.SKIN_DISEASE,
    "hemophilia": Contraindication.BLOOD_DISEASE,
    "haemophilia": Contraindication.BLOOD_DISEASE,
    "tuberculosis": Contraindication.BONE_TUBERCULOSIS,
    "exacerbation": Contraindication.CHRONIC_EXACERBATION,
    "hemostasis": Contraindication.HEMOSTASIS_DISORDER,
    "tumor": Contraindication.TUMOUR,
    "tumors": Contraindication.TUMOUR,
    "tumours": Contraindication.TUMOUR,
    "high_blood_pressure": Contraindication.HYPERTENSION,
    "hernia": Contraindication.INTERVERTEBRAL_HERNIA,
    "pacemaker": Contraindication.IMPLANTED_ELECTRONICS,
    "implant": Contraindication.IMPLANTED_ELECTRONICS,
}


def parse_contraindication(name: str) -> Contraindication:
    """The contraindication a user typed (case, spaces and dashes ignored; a few aliases)."""
    key = re.sub(r"[\s-]+", "_", name.strip().lower())
    try:
        return Contraindication(key)
    except ValueError:
        pass
    if key in _ALIASES:
        return _ALIASES[key]
    valid = ", ".join(c.value for c in Contraindication)
    raise ConfigError(f"unknown contraindication {name!r}; known: {valid}")


class KindCaps(BaseModel):
    """Intensity caps per device kind, as fractions 0..1 of the device maximum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    belt: float = Field(default=0.8, ge=0.0, le=1.0)
    pillow: float = Field(default=1.0, ge=0.0, le=1.0)
    butterfly: float = Field(default=0.5, ge=0.0, le=1.0)

    def for_kind(self, kind: DeviceKind) -> float:
        """The cap of one device kind."""
        value: float = getattr(self, kind.value)
        return value


OSTEOCHONDROSIS_CAUTION = (
    "hardware massage does not suit every case of complex osteochondrosis: the devices "
    "cannot work the areas the way an experienced therapist can (the method); "
    "ask your doctor whether it suits yours"
)
"""Shown before every session of a profile flagged complex_osteochondrosis."""


class ForToday(BaseModel):
    """Contraindications that hold for one local day only: they postpone that day's sessions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date
    items: frozenset[Contraindication] = frozenset()

    @field_serializer("items")
    def _sorted(self, value: frozenset[Contraindication]) -> list[str]:
        return sorted(c.value for c in value)

    def active(self, today: date) -> frozenset[Contraindication]:
        """The items in force on today (none on any other day)."""
        return self.items if self.day == today else frozenset()


class Profile(BaseModel):
    """One person's settings: audience, caps, EMS ramp, painful side, contraindications."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default=DEFAULT_PROFILE_NAME, pattern=NAME_PATTERN)
    audience: Audience = Audience.ADULT
    caps: KindCaps = KindCaps()
    ems_max_raise_per_100ms: int = Field(default=EMS_MAX_RAISE_PER_100MS, ge=1, le=5)
    painful_side: PainfulSide = PainfulSide.NONE
    contraindications: frozenset[Contraindication] = frozenset()
    for_today: ForToday | None = None
    """Contraindications recorded for one day only; they postpone that day's sessions."""
    complex_osteochondrosis: bool = False
    """The method's caution is shown, and confirmed, before every session."""

    def today_contraindications(self, today: date | None = None) -> frozenset[Contraindication]:
        """The contraindications recorded for today (local date when None)."""
        if self.for_today is None:
            return frozenset()
        return self.for_today.active(today if today is not None else datetime.now().date())

    @field_serializer("contraindications")
    def _sorted(self, value: frozenset[Contraindication]) -> list[str]:
        # A stable order keeps stored JSON and printed output deterministic.
        return sorted(c.value for c in value)

    def updated(self, **changes: Any) -> Profile:
        """A validated copy with some fields changed (model_copy would skip validation)."""
        data = self.model_dump(mode="json")
        data.update(changes)
        return parse_profile(data)

    def to_json(self) -> str:
        """The profile as JSON, as the store keeps it."""
        return self.model_dump_json()


DEFAULT_PROFILE = Profile()
"""Adult; caps belt 0.8, pillow 1.0, butterfly 0.5; EMS ramp 5 per 100 ms."""


def describe_validation_error(err: ValidationError, what: str, prefix: str = "") -> str:
    """One line per problem, each naming the field (caps.belt, audience, ...)."""
    problems = []
    for item in err.errors():
        field = prefix + ".".join(str(p) for p in item["loc"]) or "(whole value)"
        problems.append(f"{field}: {item['msg']} (got {item.get('input')!r})")
    return f"invalid {what}: " + "; ".join(problems)


def parse_profile(data: Mapping[str, Any] | str | bytes) -> Profile:
    """A Profile from a mapping or JSON; ConfigError naming each bad field."""
    try:
        if isinstance(data, str | bytes):
            return Profile.model_validate_json(data)
        return Profile.model_validate(dict(data))
    except ValidationError as err:
        name = None if isinstance(data, str | bytes) else data.get("name")
        what = f"profile {name!r}" if name else "profile"
        raise ConfigError(describe_validation_error(err, what)) from err


@dataclass(frozen=True, slots=True)
class ContraindicationFinding:
    """One contraindication that applies, the device kinds it blocks, and why."""

    item: Contraindication
    blocks: frozenset[DeviceKind]
    message: str


@dataclass(frozen=True, slots=True)
class ContraindicationResult:
    """What a profile's contraindications block for a set of device kinds."""

    kinds: frozenset[DeviceKind]
    findings: tuple[ContraindicationFinding, ...]
    blocked_kinds: frozenset[DeviceKind]

    @property
    def ok(self) -> bool:
        """True when nothing is blocked."""
        return not self.blocked_kinds

    @property
    def session_blocked(self) -> bool:
        """True when no device of the session may run."""
        return bool(self.kinds) and self.blocked_kinds >= self.kinds

    @property
    def allowed_kinds(self) -> frozenset[DeviceKind]:
        """The kinds that may still run."""
        return self.kinds - self.blocked_kinds

    @property
    def messages(self) -> list[str]:
        """One human sentence per finding."""
        return [f.message for f in self.findings]


def contraindication_message(item: Contraindication) -> str:
    """The sentence that explains one contraindication, naming it and the rule's source."""
    info = CONTRAINDICATIONS[item]
    return f"{item.value}: {info.reason} ({info.source})"


def check_contraindications(
    profile: Profile, kinds: Collection[DeviceKind] | None = None
) -> ContraindicationResult:
    """Which of the profile's contraindications apply to a session on these kinds, and why.

    A general item blocks every kind (the whole session); an EMS-only item
    blocks only the butterfly and is not reported when no butterfly takes part.
    kinds=None checks all three kinds.
    """
    wanted = frozenset(DeviceKind) if kinds is None else frozenset(kinds)
    findings: list[ContraindicationFinding] = []
    for item in sorted(profile.contraindications, key=_order):
        info = CONTRAINDICATIONS[item]
        blocks = wanted & _ems_kinds() if info.ems_only else wanted
        if blocks:
            findings.append(ContraindicationFinding(item, blocks, contraindication_message(item)))
    blocked = frozenset[DeviceKind]().union(*(f.blocks for f in findings))
    if blocked:
        logger.info("profile %s: contraindications block %s", profile.name, sorted(blocked))
    return ContraindicationResult(wanted, tuple(findings), blocked)


_ORDER = {c: i for i, c in enumerate(Contraindication)}


def _order(item: Contraindication) -> int:
    return _ORDER[item]


def parse_kind_caps(items: Iterable[str], base: KindCaps | None = None) -> KindCaps:
    """KindCaps from KIND=FRACTION strings (``belt=0.6``) on top of base."""
    data: dict[str, Any] = (base or KindCaps()).model_dump()
    for item in items:
        kind, sep, value = item.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in data:
            kinds = ", ".join(k.value for k in DeviceKind)
            raise ConfigError(f"invalid cap {item!r}: expected KIND=FRACTION, KIND one of {kinds}")
        try:
            data[kind] = float(value)
        except ValueError:
            raise ConfigError(f"invalid cap {item!r}: {value!r} is not a number") from None
    try:
        return KindCaps.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, "caps", prefix="caps.")) from err


def painful_body_side(profile: Profile) -> Side | None:
    """The profile's painful side as the renderer takes it (None: no one-sided pain)."""
    return {PainfulSide.LEFT: Side.LEFT, PainfulSide.RIGHT: Side.RIGHT}.get(profile.painful_side)
