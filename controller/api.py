"""The daemon's one API: the command line, the control socket and MQTT all call it.

Every request is a pydantic model, validated the same way whichever interface
it came from, so MQTT can never do what the command line could not (and an
invalid request changes nothing). Answers follow the Zigbee2MQTT bridge form:
``{"status": "ok", "data": ...}`` or ``{"status": "error", "error": "..."}``,
echoing a ``transaction`` when the request carried one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.errors import RequestError

COMMANDS = (
    "run",
    "stop",
    "emergency_stop",
    "gentler",
    "pause",
    "resume",
    "scale",
    "status",
    "devices",
    "scan",
    "pair",
    "unpair",
    "rename",
    "set_caps",
    "programs",
    "history",
    "reload",
    "heater",
    "profiles",
    "profile_set",
    "course",
    "well_today",
    "program",
    "program_check",
    "program_save",
    "pulse",
)
"""Every command of the API, by name (MQTT: massaged/bridge/request/<command>)."""


class Request(BaseModel):
    """Base of every request: unknown fields are refused, a transaction id is echoed."""

    # strict: a string is not a number and 1 is not true; payloads must say what they mean.
    # defer_build: a validator is built when a command is first used, not for all of them
    # at import (a process validates a few of them, and building each costs a millisecond).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    transaction: str | int | None = None


class RunRequest(Request):
    """Start a program on paired devices."""

    program: str = Field(min_length=1, max_length=200)
    devices: list[str] | None = None
    """Device names; all connected paired devices when None."""
    profile: str | None = None
    scale: float = Field(default=1.0, gt=0.0, le=1.0)
    """Overall intensity scale; never above 1 (the caps apply on top)."""
    well_today: bool = False
    """The person confirms they are well today; without it the session is refused."""
    accept_caution: bool = False
    """The person accepts the caution of a profile flagged for complex osteochondrosis."""
    override_spacing: bool = False
    """Start although it is earlier than the course's spacing or the rest after the last."""


class EmptyRequest(Request):
    """A command without arguments (stop, emergency_stop, gentler, pause, resume, ...)."""


class ScaleRequest(Request):
    """Set the running session's overall intensity scale."""

    scale: float = Field(gt=0.0, le=1.0)


class ScanRequest(Request):
    """Look for devices for this many seconds."""

    timeout: float = Field(default=5.0, gt=0.0, le=60.0)


class PairRequest(Request):
    """Pair a device found by a scan (or at a serial path)."""

    address: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, min_length=1, max_length=64)
    kind: Literal["belt", "pillow", "butterfly"] | None = None
    window: float = Field(default=30.0, gt=0.0, le=300.0)
    """Seconds to look for the device before giving up."""


class NameRequest(Request):
    """A command about one paired device (unpair)."""

    name: str = Field(min_length=1, max_length=64)


class RenameRequest(Request):
    """Rename a paired device."""

    name: str = Field(min_length=1, max_length=64)
    new_name: str = Field(min_length=1, max_length=64)


class SetCapsRequest(Request):
    """Per-device cap, a fraction of the device's maximum (can only be 0..1)."""

    name: str = Field(min_length=1, max_length=64)
    max_intensity: float = Field(ge=0.0, le=1.0)


class HeaterRequest(Request):
    """Switch a device's heater on or off for the running session."""

    device: str = Field(min_length=1, max_length=64)
    on: bool


class HistoryRequest(Request):
    """The latest sessions."""

    limit: int = Field(default=20, ge=1, le=1000)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ProfileSetRequest(Request):
    """Create or change a profile; fields left out keep their value (see controller.profiles)."""

    name: str = Field(min_length=1, max_length=64)
    audience: Literal["adult", "child"] | None = None
    caps: dict[Literal["belt", "pillow", "butterfly"], Fraction] | None = None
    """Per-kind caps, fractions 0..1 ({"belt": 0.6}); kinds left out keep theirs."""
    ems_max_raise_per_100ms: int | None = Field(default=None, ge=1, le=5)
    painful_side: Literal["left", "right", "none"] | None = None
    contraindications: list[str] | None = Field(default=None, max_length=64)
    """The whole list (it replaces the old one); names as in `massaged profiles`."""
    today: list[str] | None = Field(default=None, max_length=64)
    """Contraindications for today only (they postpone today's sessions); [] clears them."""
    complex_osteochondrosis: bool | None = None

    @field_validator("contraindications", "today")
    @classmethod
    def _known(cls, names: list[str] | None) -> list[str] | None:
        from controller.profiles import parse_contraindication
        from devices.errors import ConfigError

        # A misspelt condition is bad input, refused before anything is saved.
        try:
            return None if names is None else [parse_contraindication(n).value for n in names]
        except ConfigError as err:
            raise ValueError(str(err)) from None


class ProfileRequest(Request):
    """A question about one profile (the configured one when left out)."""

    profile: str | None = Field(default=None, min_length=1, max_length=64)


class WellTodayRequest(Request):
    """The person's answer to "are you well today?" for today."""

    well: bool
    profile: str | None = Field(default=None, min_length=1, max_length=64)


class ProgramRequest(Request):
    """One program by id: its steps and its plot."""

    name: str = Field(min_length=1, max_length=64)


PROGRAM_TEXT_MAX = 64 * 1024
"""The longest program file accepted over the API, in characters."""


class ProgramCheckRequest(Request):
    """A program file's text to check (nothing is saved)."""

    text: str = Field(max_length=PROGRAM_TEXT_MAX)


class ProgramSaveRequest(Request):
    """A program file to check and save in the user's program folder as <name>.toml."""

    name: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=PROGRAM_TEXT_MAX)


class PulseRequest(Request):
    """A short felt pulse: a paired device by name, or a found one by address (and kind)."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    address: str | None = Field(default=None, min_length=1, max_length=200)
    kind: Literal["belt", "pillow", "butterfly"] | None = None

    @model_validator(mode="after")
    def _one_device(self) -> PulseRequest:
        if (self.name is None) == (self.address is None):
            raise ValueError("give name (a paired device) or address (a found one), not both")
        if self.name is not None and self.kind is not None:
            raise ValueError("kind goes with address: a paired device's kind is known")
        return self


REQUEST_MODELS: dict[str, type[Request]] = {
    "run": RunRequest,
    "stop": EmptyRequest,
    "emergency_stop": EmptyRequest,
    "gentler": EmptyRequest,
    "pause": EmptyRequest,
    "resume": EmptyRequest,
    "scale": ScaleRequest,
    "status": EmptyRequest,
    "devices": EmptyRequest,
    "scan": ScanRequest,
    "pair": PairRequest,
    "unpair": NameRequest,
    "rename": RenameRequest,
    "set_caps": SetCapsRequest,
    "programs": EmptyRequest,
    "history": HistoryRequest,
    "reload": EmptyRequest,
    "heater": HeaterRequest,
    "profiles": EmptyRequest,
    "profile_set": ProfileSetRequest,
    "course": ProfileRequest,
    "well_today": WellTodayRequest,
    "program": ProgramRequest,
    "program_check": ProgramCheckRequest,
    "program_save": ProgramSaveRequest,
    "pulse": PulseRequest,
}


def parse_request(command: str, payload: object) -> Request:
    """Validate a request payload (a dict, or None/"" for no arguments) for a command."""
    model = REQUEST_MODELS.get(command)
    if model is None:
        raise RequestError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    if payload is None or payload == "":
        payload = {}
    if not isinstance(payload, dict):
        raise RequestError(f"{command}: the payload must be a JSON object, not {payload!r:.60}")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in err.errors()
        )
        raise RequestError(f"{command}: {problems}") from None


def ok(data: Any = None, transaction: str | int | None = None) -> dict[str, Any]:
    """A success answer."""
    answer: dict[str, Any] = {"status": "ok", "data": data if data is not None else {}}
    if transaction is not None:
        answer["transaction"] = transaction
    return answer


def error(message: str, transaction: str | int | None = None) -> dict[str, Any]:
    """A failure answer."""
    answer: dict[str, Any] = {"status": "error", "data": {}, "error": message}
    if transaction is not None:
        answer["transaction"] = transaction
    return answer


class DaemonAPI(Protocol):
    """What the daemon offers to its front ends; every method returns JSON-able data."""

    async def handle(self, command: str, request: Request) -> Any:
        """Carry out one validated request; raise a MassagedError naming what went wrong."""
        ...


async def dispatch(api: DaemonAPI, command: str, payload: object) -> dict[str, Any]:
    """Validate, carry out and answer one request; never raises for bad input."""
    from devices.errors import MassagedError

    transaction = payload.get("transaction") if isinstance(payload, dict) else None
    if not isinstance(transaction, str | int) or isinstance(transaction, bool):
        transaction = None
    try:
        request = parse_request(command, payload)
        return ok(await api.handle(command, request), transaction)
    except MassagedError as err:
        return error(str(err), transaction)
