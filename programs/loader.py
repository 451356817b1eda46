"""Reading program files: TOML in, a Program or a ProgramError naming file, step and field out."""

from __future__ import annotations

import difflib
import json
import logging
import re
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from devices.capabilities import DeviceKind
from programs.errors import ProgramError
from programs.model import (
    Audience,
    Program,
    ProgramIssue,
    Step,
    StepSide,
    Technique,
    Zone,
    fmt_number,
    program_schema,
)
from programs.plan_checks import burst_issues

logger = logging.getLogger(__name__)

SCHEMA_PATH: Final = Path(__file__).with_name("schema.json")
"""The published JSON schema, checked into the repository (a test keeps it up to date)."""

_ENUMS: Final[dict[str, type[StrEnum]]] = {
    "technique": Technique,
    "zone": Zone,
    "side": StepSide,
    "audience": Audience,
    "devices": DeviceKind,
}

_TECHNIQUES: Final = frozenset(Technique)

_RANGE_HINTS: Final[dict[str, str]] = {
    "intensity": "intensities run from 0 to 1",
    "start_intensity": "intensities run from 0 to 1",
    "end_intensity": "intensities run from 0 to 1",
    "max_duration": "minutes; the method allows up to 30 for adults and 15 for children",
    "duration_s": "seconds",
    "repetitions": "a count",
}

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def schema_text() -> str:
    """The JSON schema as the text of programs/schema.json."""
    return json.dumps(program_schema(), indent=2, ensure_ascii=False) + "\n"


def load_program(path: Path) -> Program:
    """Read and validate one program file."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ProgramError(
            f"{source}: cannot read: {err.strerror or err}",
            source=source,
            issues=(ProgramIssue(message=f"cannot read: {err.strerror or err}"),),
        ) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProgramError(
            f"{source}: not UTF-8 text (byte {err.start})",
            source=source,
            issues=(ProgramIssue(message="not UTF-8 text"),),
        ) from err
    return parse_program(text, source=source)


def parse_program(text: str, *, source: str = "<program>") -> Program:
    """Parse TOML text and validate it as a program; source names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        match = _TOML_WHERE.search(msg)
        if match is None:
            detail = f"not valid TOML: {msg}"
            raise ProgramError(
                f"{source}: {detail}", source=source, issues=(ProgramIssue(message=detail),)
            ) from err
        if match.group(1) is None:  # "at end of document": the last line
            line = text.rstrip("\n").count("\n") + 1
            detail = f"not valid TOML: {msg[: match.start()]} (at the end of the file)"
        else:
            line = int(match.group(1))
            detail = f"not valid TOML: {msg[: match.start()]} (column {match.group(2)})"
        raise ProgramError(
            f"{source}: line {line}: {detail}",
            source=source,
            issues=(ProgramIssue(message=detail, line=line),),
        ) from err
    return validate_data(data, source=source)


def validate_data(data: Mapping[str, Any], *, source: str = "<program>") -> Program:
    """Validate already-parsed data as a program, and its rendered plan."""
    try:
        program = Program.model_validate(data)
    except ValidationError as err:
        issues = tuple(_issue(e, data) for e in err.errors(include_url=False) if not _is_echo(e))
        lines = [f"{source}: {_where(issue)}{issue.message}" for issue in issues]
        raise ProgramError("\n".join(lines), source=source, issues=issues) from err
    # The rules on what the devices would do, checked on the rendered plan.
    planned = tuple(burst_issues(program))
    if planned:
        lines = [f"{source}: {_where(issue)}{issue.message}" for issue in planned]
        raise ProgramError("\n".join(lines), source=source, issues=planned)
    logger.debug("%s: program %s valid, %d steps", source, program.id, len(program.steps))
    return program


def _is_echo(error: ErrorDetails) -> bool:
    """A "too short" that pydantic adds when an item of a long enough list failed."""
    if error["type"] != "too_short":
        return False
    value = error.get("input")
    minimum = (error.get("ctx") or {}).get("min_length", 1)
    return isinstance(value, list | tuple) and len(value) >= minimum


def _where(issue: ProgramIssue) -> str:
    """ "step 3 (vibration): duration_s: " — the human part before the message."""
    parts = ""
    if issue.step is not None:
        parts += f"step {issue.step + 1}"
        parts += f" ({issue.technique}): " if issue.technique else ": "
    if issue.field:
        parts += f"{issue.field}: "
    return parts


def _issue(error: ErrorDetails, data: Mapping[str, Any]) -> ProgramIssue:
    """Turn one pydantic error into a located, readable issue."""
    loc: Sequence[int | str] = error["loc"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    step: int | None = None
    rest: Sequence[int | str] = loc
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step, rest = loc[1], loc[2:]
    elif isinstance(ctx.get("step"), int):
        step = ctx["step"]
    names = [part for part in rest if isinstance(part, str)]
    field: str | None = ctx.get("field") or (names[-1] if names else None)
    if field is None and list(loc) == ["steps"]:
        field = "steps"
    technique = _technique_of(data, step)
    model: type[BaseModel] = Step if step is not None else Program
    message = _message(error, field, model, ctx)
    return ProgramIssue(message=message, step=step, technique=technique, field=field)


def _technique_of(data: Mapping[str, Any], step: int | None) -> str | None:
    """The technique of a step as written, if it is a valid one."""
    if step is None:
        return None
    steps = data.get("steps")
    if not isinstance(steps, list) or not 0 <= step < len(steps):
        return None
    raw = steps[step]
    value = raw.get("technique") if isinstance(raw, dict) else None
    # Only text can name a technique: a list or a table there is unhashable (and is
    # reported as the step's own error), so it must not reach the set lookup.
    return value if isinstance(value, str) and value in _TECHNIQUES else None


def _show(value: Any) -> str:
    """An input value as it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return fmt_number(value)
    return repr(value)


def _message(
    error: ErrorDetails, field: str | None, model: type[BaseModel], ctx: dict[str, Any]
) -> str:
    """What is wrong and what would be valid, in words."""
    kind = error["type"]
    value = error.get("input")
    hint = _RANGE_HINTS.get(field or "", "")
    hint = f" ({hint})" if hint else ""
    if kind == "program_rule":
        return str(ctx["detail"])
    if kind == "missing":
        return "missing: this field is required"
    if kind == "extra_forbidden":
        fields = list(model.model_fields)
        close = difflib.get_close_matches(str(field), fields, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        what = "a step" if model is Step else "a program"
        return f"unknown field; {guess}{what} has {', '.join(fields)}"
    if kind == "enum" and field in _ENUMS:
        valid = [m.value for m in _ENUMS[field]]
        close = difflib.get_close_matches(str(value), valid, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_show(value)} is not one of {', '.join(valid)}{guess}"
    if kind == "less_than_equal":
        return f"{_show(value)} is more than {_show(ctx['le'])}{hint}"
    if kind == "less_than":
        return f"{_show(value)} must be less than {_show(ctx['lt'])}{hint}"
    if kind == "greater_than_equal":
        return f"{_show(value)} is less than {_show(ctx['ge'])}{hint}"
    if kind == "greater_than":
        return f"{_show(value)} must be more than {_show(ctx['gt'])}{hint}"
    if kind == "string_pattern_mismatch":
        return (
            f"{_show(value)} is not a slug: use lower-case letters, digits and single dashes, "
            "like 'my-neck'"
        )
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"longer than {ctx.get('max_length')} characters"
    if kind == "too_short":
        return "a program needs at least one [[steps]] table" if field == "steps" else "empty"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{_show(value)} is not a whole number{hint}"
    if kind in ("float_type", "float_parsing"):
        return f"{_show(value)} is not a number{hint}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{_show(value)} is not true or false"
    if kind == "string_type":
        return f"{_show(value)} is not text (put it in quotes)"
    if kind in ("tuple_type", "list_type"):
        return f"{_show(value)} is not a list; write it as [...]"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "each step must be a [[steps]] table"
    return str(error["msg"])
