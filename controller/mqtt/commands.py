"""What each MQTT command topic accepts: one definition for discovery, the bridge and the docs.

Home Assistant sends fixed payloads: a button its ``payload_press``, a switch its
``payload_on`` / ``payload_off``, a select one of its ``options``, a number its
value as decimal text. Discovery takes those keys from :data:`ENTITIES` and the
bridge accepts exactly what they say, so the two cannot drift. Everything else
is refused with a message naming the topic's payloads: above all an empty
payload, which is also what a client sends to delete a retained message
(``mosquitto_pub -r -n``), whitespace and ``null``, but also the right word in
the wrong case or another entity's payload.

Pure functions and data: no I/O.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller import jsonline
from controller.errors import BadPayload, JsonError

SCALE_MIN: Final = 0.1
SCALE_MAX: Final = 1.0
SCALE_STEP: Final = 0.05
PAYLOAD_PRESS: Final = "PRESS"
"""What a device's button sends (Home Assistant's default payload_press)."""
PAYLOAD_ON: Final = "ON"
PAYLOAD_OFF: Final = "OFF"
REQUEST_PRESS: Final = "{}"
"""What the bridge's own buttons send to their request topic: a request without fields."""
BUTTONS: Final = ("start", "pause", "stop", "emergency_stop", "gentler")
STOPS: Final = frozenset({"stop", "emergency_stop"})
"""Commands never refused for their payload: stopping is always safe, and a user
reaching for a stop with a hand-made message (an empty one, "press") must get it."""
"""The per-device buttons; each is a command topic <base>/<device>/set/<button>."""
ACTIONS: Final = (*BUTTONS, "resume")
"""The actions of the JSON <base>/<device>/set topic."""
MAX_TEXT_BYTES: Final = 256
"""Longest entity payload (plain text) read."""
MAX_JSON_BYTES: Final = jsonline.MAX_BYTES
"""Longest JSON payload (requests and <base>/<device>/set) read."""

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
"""A number as Home Assistant's number entity sends it ("0.55", "1")."""


def describe(payload: bytes) -> str:
    """A payload as an error message names it (short, and printable)."""
    if not payload:
        return "an empty payload (which is also how a retained message is deleted)"
    if not payload.strip():
        return "a payload of only whitespace"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(payload)} bytes that are not UTF-8 text"
    if text.strip() == "null":
        return "null"
    if len(text) > 40:
        return f"{text[:40]!r}... ({len(payload)} bytes)"
    return repr(text)


def decode_json(payload: bytes) -> Any:
    """The JSON value of a payload; BadPayload when it is too large, not UTF-8, not JSON or deep.

    The same decoding as the control socket's (controller.jsonline), so a hostile
    payload meets the same plain refusal on both.
    """
    try:
        return jsonline.decode(payload, limit=MAX_JSON_BYTES)
    except JsonError as err:
        raise BadPayload(f"payload {err}") from None


REQUEST_EXPECTED: Final = "a JSON object of the command's fields ({} for none)"


def request_fields(payload: bytes, command: str = "") -> dict[str, Any]:
    """The fields of a request on <base>/bridge/request/<command>: a JSON object, nothing else.

    An empty payload is refused, not read as "no fields": it is what deleting a
    retained message sends, and a resume or a run must never come from that.
    A stop is the exception: any payload stops. Only its "transaction" is read, so
    that nothing in it (an unknown field, a wrong type) can keep it from stopping.
    """
    if command in STOPS:
        try:
            data = decode_json(payload) if payload.strip() else {}
        except BadPayload:
            data = {}
        if isinstance(data, dict) and "transaction" in data:
            return {"transaction": data["transaction"]}
        return {}
    if not payload.strip() or payload.strip() == b"null":
        raise BadPayload(f"{describe(payload)} is refused; it takes {REQUEST_EXPECTED}")
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise BadPayload(f"{describe(payload)} is refused; it takes {REQUEST_EXPECTED}")
    return data


class SetRequest(BaseModel):
    """What one message on a device's set topics asks for, applied in this order."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    program: str | None = Field(default=None, min_length=1, max_length=200)
    scale: float | None = Field(default=None, ge=SCALE_MIN, le=SCALE_MAX, allow_inf_nan=False)
    heater: bool | None = None
    well_today: bool | None = None
    """The person says they are well today (true) or takes it back (false); see docs/mqtt.md."""
    accept_caution: bool | None = None
    """With a start: the method's caution for complex osteochondrosis was read and accepted."""
    override_spacing: bool | None = None
    """With a start: start although the course's spacing or the rest after the last asks to wait."""
    action: str | None = None

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str | None) -> str | None:
        if value is not None and value not in ACTIONS:
            raise ValueError(f"must be one of {', '.join(ACTIONS)}")
        return value

    @property
    def empty(self) -> bool:
        """True when it asks for nothing."""
        return all(
            v is None for v in (self.program, self.scale, self.heater, self.well_today, self.action)
        )


SET_EXPECTED: Final = (
    "a JSON object with at least one of program (id), scale "
    f"({SCALE_MIN}..{SCALE_MAX}), heater (true/false), well_today (true/false), "
    f"action ({', '.join(ACTIONS)}); with a start also accept_caution and override_spacing"
)


def parse_set(payload: bytes, programs: Sequence[str]) -> SetRequest:
    """The JSON of <base>/<device>/set; BadPayload unless all of it is valid."""
    if not payload.strip() or payload.strip() == b"null":
        raise BadPayload(f"{describe(payload)} is refused; it takes {SET_EXPECTED}")
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise BadPayload(f"{describe(payload)} is refused; it takes {SET_EXPECTED}")
    try:
        request = SetRequest.model_validate(data)
    except ValidationError as err:
        raise BadPayload(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
                for e in err.errors()
            )
        ) from None
    if request.empty:
        raise BadPayload(f"an empty object sets nothing; it takes {SET_EXPECTED}")
    if request.program is not None and request.program not in programs:
        raise BadPayload(f"unknown program {request.program!r:.60}")
    return request


def _text(payload: bytes) -> str:
    if len(payload) > MAX_TEXT_BYTES:
        raise BadPayload(f"payload too large: {len(payload)} bytes (at most {MAX_TEXT_BYTES})")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("payload is not UTF-8 text") from None


class Entity(ABC):
    """One command entity of a device: its Home Assistant platform and the payloads it takes."""

    platform: str

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def discovery(self, programs: Sequence[str]) -> dict[str, Any]:
        """The keys of its discovery component that say what Home Assistant sends."""

    @abstractmethod
    def expected(self, programs: Sequence[str]) -> str:
        """What its topic takes, as an error message and docs/mqtt.md say it."""

    @abstractmethod
    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        """The request a payload means, or None when the topic does not take it."""

    def parse(self, payload: bytes, programs: Sequence[str]) -> SetRequest:
        """The request a payload means; BadPayload (saying what the topic takes) otherwise."""
        request = self._accept(_text(payload), programs)
        if request is None:
            raise BadPayload(f"{describe(payload)} is refused; it takes {self.expected(programs)}")
        return request


class Button(Entity):
    """A button: exactly its payload_press acts."""

    platform = "button"

    def discovery(self, programs: Sequence[str]) -> dict[str, Any]:
        """payload_press."""
        return {"payload_press": PAYLOAD_PRESS}

    def expected(self, programs: Sequence[str]) -> str:
        """Exactly PRESS."""
        return f"exactly {PAYLOAD_PRESS}"

    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        return SetRequest(action=self.name) if text == PAYLOAD_PRESS else None


class StopButton(Button):
    """A stop button: any payload stops (a retained one is still never carried out)."""

    def expected(self, programs: Sequence[str]) -> str:
        """PRESS, though any payload stops."""
        return f"{PAYLOAD_PRESS} (any payload stops)"

    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        return SetRequest(action=self.name)

    def parse(self, payload: bytes, programs: Sequence[str]) -> SetRequest:
        """Always a stop, whatever the payload (even too large or not UTF-8)."""
        return SetRequest(action=self.name)


class Switch(Entity):
    """A switch (the heater, "well today"): exactly payload_on or payload_off."""

    platform = "switch"

    def __init__(self, name: str, field: str) -> None:
        super().__init__(name)
        self.field = field
        """The SetRequest field it sets."""

    def discovery(self, programs: Sequence[str]) -> dict[str, Any]:
        """payload_on and payload_off."""
        return {"payload_on": PAYLOAD_ON, "payload_off": PAYLOAD_OFF}

    def expected(self, programs: Sequence[str]) -> str:
        """Exactly ON or OFF."""
        return f"exactly {PAYLOAD_ON} or {PAYLOAD_OFF}"

    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        if text not in (PAYLOAD_ON, PAYLOAD_OFF):
            return None
        return SetRequest.model_validate({self.field: text == PAYLOAD_ON})


class ProgramSelect(Entity):
    """The program select: exactly one of its options."""

    platform = "select"

    def discovery(self, programs: Sequence[str]) -> dict[str, Any]:
        """options."""
        return {"options": list(programs)}

    def expected(self, programs: Sequence[str]) -> str:
        """One of the program ids."""
        shown = ", ".join(programs[:8]) + (", ..." if len(programs) > 8 else "")
        return f"exactly one of the program ids in bridge/info ({shown})"

    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        return SetRequest(program=text) if text in programs else None


class ScaleNumber(Entity):
    """The intensity scale: a decimal number within min..max."""

    platform = "number"

    def discovery(self, programs: Sequence[str]) -> dict[str, Any]:
        """min, max and step."""
        return {"min": SCALE_MIN, "max": SCALE_MAX, "step": SCALE_STEP}

    def expected(self, programs: Sequence[str]) -> str:
        """A number within the range."""
        return f"a decimal number from {SCALE_MIN} to {SCALE_MAX} (such as 0.6)"

    def _accept(self, text: str, programs: Sequence[str]) -> SetRequest | None:
        if not _DECIMAL.fullmatch(text):
            return None
        value = float(text)
        if not math.isfinite(value) or not SCALE_MIN <= value <= SCALE_MAX:
            return None
        return SetRequest(scale=value)


ENTITIES: Final[Mapping[str, Entity]] = {
    "program": ProgramSelect("program"),
    "scale": ScaleNumber("scale"),
    **{button: StopButton(button) if button in STOPS else Button(button) for button in BUTTONS},
    "heater": Switch("heater", "heater"),
    "well_today": Switch("well_today", "well_today"),
}
"""Every <base>/<device>/set/<entity> topic and what it takes."""


def parse_entity(entity: Sequence[str], payload: bytes, programs: Sequence[str]) -> SetRequest:
    """A message on <base>/<device>/set (no entity) or .../set/<entity>; BadPayload if refused."""
    if not entity:
        return parse_set(payload, programs)
    handler = ENTITIES.get(entity[0]) if len(entity) == 1 else None
    if handler is None:
        names = ", ".join(ENTITIES)
        raise BadPayload(f"unknown entity {'/'.join(entity)!r:.40}; the entities are {names}")
    return handler.parse(payload, programs)
