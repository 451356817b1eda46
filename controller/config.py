"""The configuration of massaged: one TOML file, defaults for all, environment overrides.

Which file: ``--config PATH``, else ``$MASSAGED_CONFIG``, else ``config.toml``
in the configuration directory (:func:`controller.paths.config_dir`). A missing
default file means every setting at its default; a missing file that was named
explicitly is an error.

Layers, the last one wins: the defaults, the file, then the environment
variables ``MASSAGED_<SECTION>_<KEY>`` (``MASSAGED_MQTT_PORT=1884``).

The file is validated strictly (a string is not a number, 1 is not true) and
an unknown key is an error, so a typo is refused instead of silently ignored.
Every error names the file and line (or the variable), the ``[section] key``,
what was given and what would be valid; a secret is never echoed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretBytes,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from controller import paths
from controller.default_settings import DEFAULT_DISPLAY, DEFAULT_PROGRAM
from controller.errors import BadConfigError
from controller.mqtt.settings import MqttSettings
from controller.paths import default_control_socket as default_control_socket  # re-exported
from controller.profile_terms import DEFAULT_PROFILE_NAME

# Which file is read, and reading it, are the light rules of the command line's quick path
# (no pydantic there): one rule for both. CONFIG_ENV names the file (like --config).
from controller.quick_control import CONFIG_ENV as CONFIG_ENV
from controller.quick_control import CONFIG_FILENAME as CONFIG_FILENAME
from controller.quick_control import config_location, read_config_text
from controller.web.settings import WebSettings
from devices.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_PREFIX = "MASSAGED_"
SECRET_MASK = "********"
"""Shown in place of every secret (a password is never printed)."""
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

Source = Literal["default", "file", "env"]
"""Where a setting's value came from."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Patterns as text, compiled by re (and kept in its cache) when first used: only an
# error message or `config show` needs them, and compiling them costs every command
# that reads the configuration a millisecond.
_TOML_WHERE = r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$"
_KEY_PART = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_TABLE_HEADER = rf"^\s*\[\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*\]"
_ARRAY_HEADER = r"^\s*\[\["
_KEY_LINE = rf"^\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*="
_BARE_KEY = r"^[A-Za-z0-9_-]+$"


def _expand_user(path: Path) -> Path:
    try:
        return path.expanduser()
    except RuntimeError:  # "~name" of a user this system does not know
        raise ValueError(f"cannot expand {str(path).split('/')[0]!r}: no such user") from None


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _default_radio_path() -> Path:
    """The simulated radio's socket (devices.links.sim_radio.default_radio_path)."""
    # Imported when the default is made, not with this module: that module belongs to
    # the simulated BLE stack, and importing the settings should not load it.
    from devices.links.sim_radio import default_radio_path

    return default_radio_path()


UserPath = Annotated[Path, AfterValidator(_expand_user)]
"""A path; a leading ~ means the home directory."""
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
]

# Not frozen: the daemon command lets --socket, --db and the like replace a setting;
# validate_assignment keeps such a change as valid as the file. Each setting's
# description is given to Field, not as a docstring under it: pydantic's
# use_attribute_docstrings finds those by reading and parsing the source at import,
# which cost every command that reads the configuration tens of milliseconds.
_SECTION_CONFIG = ConfigDict(extra="forbid", validate_assignment=True)


class DaemonSettings(BaseModel):
    """[daemon]: the control socket, logging, links and the simulator."""

    model_config = _SECTION_CONFIG

    socket: UserPath = Field(
        default_factory=default_control_socket,
        description="Path of the control socket that the CLI and other clients connect to.",
    )
    socket_group: str | None = Field(
        default=None,
        min_length=1,
        description="A group whose members may also connect to the socket; unset: the owner only.",
    )
    log_level: LogLevel = Field(
        default="info",
        description="Least severe level logged: debug, info, warning, error or critical.",
    )
    wire_debug: bool = Field(
        default=False,
        description="Log every frame sent and received, as hex, at debug level.",
    )
    reconnect_min: float = Field(
        default=0.5,
        gt=0,
        allow_inf_nan=False,
        description=(
            "First delay, in seconds, before reconnecting a lost device; it doubles each try."
        ),
    )
    reconnect_max: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest delay, in seconds, between reconnect attempts.",
    )
    scan_timeout: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="How long, in seconds, one BLE scan for devices lasts.",
    )
    simulator: bool = Field(
        default=False,
        description=(
            "Reach the simulated devices of a running `massaged simulate` instead of real BLE."
        ),
    )
    simulator_radio: UserPath = Field(
        default_factory=_default_radio_path,
        description=(
            "The simulated radio's socket ($MASSAGED_SIM_RADIO, else a private runtime directory)."
        ),
    )
    watchdog: bool = Field(
        default=True,
        description="Ping the systemd watchdog when systemd asks for it ($WATCHDOG_USEC).",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> DaemonSettings:
        """The first reconnect delay cannot be longer than the longest one."""
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(
                f"reconnect_min ({self.reconnect_min:g} s) is longer than "
                f"reconnect_max ({self.reconnect_max:g} s); make reconnect_min the smaller"
            )
        return self


class StoreSettings(BaseModel):
    """[store]: the SQLite history database."""

    model_config = _SECTION_CONFIG

    path: UserPath = Field(
        default_factory=paths.db_path,
        description="The database file (default: the data directory / massaged.db).",
    )


class SessionSettings(BaseModel):
    """[session]: what a session uses when the command line does not say."""

    model_config = _SECTION_CONFIG

    profile: str = Field(
        default=DEFAULT_PROFILE_NAME,
        min_length=1,
        description="The user profile a session runs for.",
    )
    default_program: str = Field(
        default=DEFAULT_PROGRAM,
        min_length=1,
        description="The program (an id from the library, or a TOML file) run when none is named.",
    )
    display: bool = Field(
        default=DEFAULT_DISPLAY,
        description=(
            "Show the live view during a session (on a terminal); false: one line per step."
        ),
    )


class Config(BaseModel):
    """The whole configuration: [daemon], [store], [session], [mqtt] and [web]."""

    model_config = _SECTION_CONFIG

    daemon: DaemonSettings = Field(
        default_factory=DaemonSettings,
        description="The control socket, logging, links and the simulator.",
    )
    store: StoreSettings = Field(
        default_factory=StoreSettings,
        description="The history database.",
    )
    session: SessionSettings = Field(
        default_factory=SessionSettings,
        description="Session defaults.",
    )
    mqtt: MqttSettings = Field(
        default_factory=MqttSettings,
        description="The MQTT bridge (Home Assistant discovery).",
    )
    web: WebSettings = Field(
        default_factory=WebSettings,
        description="The web page served by the daemon.",
    )

    _file: Path | None = PrivateAttr(default=None)
    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)

    @property
    def file(self) -> Path | None:
        """The file this configuration was read from; None when every value is a default."""
        return self._file

    @property
    def sources(self) -> dict[str, Source]:
        """Where each setting came from, by "section.key" (see config_sources)."""
        return config_sources(self)


class ConfigLocation(NamedTuple):
    """The configuration file to read, and whether it was named explicitly."""

    path: Path
    explicit: bool


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong with the configuration, located."""

    message: str = Field(
        description='What is wrong and what would be valid; starts with "[section] key".',
    )
    file: Path | None = None
    line: int | None = None
    variable: str | None = Field(
        default=None,
        description="The environment variable that set the value, if one did.",
    )
    section: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        if self.variable is not None:
            return f"environment variable {self.variable}: {self.message}"
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}: line {self.line}: {self.message}"


def sections() -> dict[str, type[BaseModel]]:
    """Each [section] name and its settings model, in file order."""
    found: dict[str, type[BaseModel]] = {}
    for name, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found[name] = model
    return found


def env_var(section: str, key: str) -> str:
    """The environment variable that overrides [section] key: MASSAGED_SECTION_KEY."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def config_path(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> ConfigLocation:
    """The file to read: path, else $MASSAGED_CONFIG, else config_dir()/config.toml."""
    # One rule for both: the quick path and `config path` find the file without this module.
    return ConfigLocation(*config_location(path, environ))


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration; BadConfigError says what is wrong where."""
    env = os.environ if environ is None else environ
    location = config_path(path, environ=env)
    text = _read(location)
    file = location.path if text is not None else None
    data: dict[str, Any] = {} if text is None else _parse(text, location.path)

    sources: dict[str, Source] = {}
    for section, table in data.items():
        if isinstance(table, dict):
            sources.update({f"{section}.{key}": "file" for key in table})

    overrides = _env_overrides(env)
    for (section, key), value in overrides.items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # else the file's own error is reported below
            table[key] = value
            sources[f"{section}.{key}"] = "env"

    # Defaults that depend on the environment follow the environ given, not os.environ.
    for section, key, default in (
        ("daemon", "socket", default_control_socket(env)),
        ("store", "path", paths.db_path(env)),
    ):
        table = data.setdefault(section, {})
        if isinstance(table, dict) and key not in table:
            table[key] = str(default)

    for section, model in sections().items():
        for key in model.model_fields:
            sources.setdefault(f"{section}.{key}", "default")

    try:
        # JSON mode is strict without refusing a string for a path: "1883" is not a port.
        config = Config.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as err:
        issues = [
            _issue(error, text=text, file=file, sources=sources)
            for error in err.errors(include_url=False)
        ]
        # The file's issues in line order, then the environment's.
        issues.sort(key=lambda issue: (issue.variable is not None, issue.line or 0))
        raise BadConfigError(issues) from None
    config._file = file
    config._sources = sources
    if file is None:
        logger.debug("no configuration file at %s: defaults", location.path)
    else:
        logger.debug("configuration read from %s", file)
    return config


def config_sources(config: Config) -> dict[str, Source]:
    """Where each setting came from, by "section.key": "default", "file" or "env"."""
    found: dict[str, Source] = {}
    for section, model in sections().items():
        for key in model.model_fields:
            dotted = f"{section}.{key}"
            found[dotted] = config._sources.get(dotted, "default")
    return found


def effective_config_text(config: Config, *, annotate: bool = False) -> str:
    """The configuration as TOML, secrets masked; annotate: say where each value came from."""
    lines: list[str] = []
    origins = config_sources(config) if annotate else None
    for section in sections():
        _emit_table(lines, (section,), getattr(config, section), origins)
    return "\n".join(lines) + "\n"


def effective_config_data(config: Config) -> dict[str, Any]:
    """The configuration for ``config show --json``: each setting's value and where it came from.

    {"file": path or None, "settings": {section: {key: {"value": v, "source": s}}}};
    secrets masked as in the TOML.
    """
    origins = config_sources(config)
    settings: dict[str, dict[str, Any]] = {}
    for section in sections():
        model = getattr(config, section)
        dumped = model.model_dump(mode="json")
        table: dict[str, Any] = {}
        for name in type(model).model_fields:
            secret = isinstance(getattr(model, name), SecretStr | SecretBytes)
            table[name] = {
                "value": SECRET_MASK if secret else dumped[name],
                "source": origins.get(f"{section}.{name}", "default"),
            }
        settings[section] = table
    return {"file": None if config.file is None else str(config.file), "settings": settings}


def _read(location: ConfigLocation) -> str | None:
    """The file's text; None when the default file does not exist."""
    # The same reading as the commands' early check (check_config_file): the same errors.
    return read_config_text(location.path, location.explicit)


def _parse(text: str, file: Path) -> dict[str, Any]:
    """TOML text as a dict; a syntax error names the line."""
    import tomllib  # here: most set-ups have no file, and it costs a command a millisecond

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = re.search(_TOML_WHERE, message)
        if match is None:
            raise ConfigError(f"{file}: not valid TOML: {message}") from None
        what = message[: match.start()]
        if match.group(1) is None:  # "at end of document": the last line
            line = text.rstrip("\n").count("\n") + 1
            raise ConfigError(f"{file}: line {line}: not valid TOML: {what} (at the end)") from None
        column = match.group(2)
        raise ConfigError(
            f"{file}: line {match.group(1)}: not valid TOML: {what} (column {column})"
        ) from None
    _refuse_dates(data, (), text, file)
    return data


def _refuse_dates(value: object, where: tuple[str, ...], text: str, file: Path) -> None:
    """No setting is a date or time; JSON could not carry one to validation either."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_dates(item, (*where, key), text, file)
    elif isinstance(value, list):
        for item in value:
            _refuse_dates(item, where, text, file)
    elif isinstance(value, datetime.date | datetime.time):
        section, key = where[0], ".".join(where[1:]) or None
        raise BadConfigError(
            [
                ConfigIssue(
                    message=f"{_name(section, key)}: a date or time is not valid here",
                    file=file,
                    line=_locate(text, where),
                    section=section,
                    key=key,
                )
            ]
        )


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], object]:
    """The MASSAGED_<SECTION>_<KEY> variables, converted to the type their setting takes."""
    found: dict[tuple[str, str], object] = {}
    issues: list[ConfigIssue] = []
    models = sections()
    for variable in sorted(environ):
        for section, model in models.items():
            prefix = f"{ENV_PREFIX}{section.upper()}_"
            if not variable.startswith(prefix):
                continue
            key = variable[len(prefix) :].lower()
            field = model.model_fields.get(key)
            if field is None or _nested_model(field.annotation) is not None:
                keys = [
                    k
                    for k in model.model_fields
                    if _nested_model(model.model_fields[k].annotation) is None
                ]
                close = _close_match(key, keys)
                guess = f"; did you mean {env_var(section, close[0])}?" if close else ""
                issues.append(
                    ConfigIssue(
                        message=f"[{section}] has no setting {key!r}{guess}",
                        variable=variable,
                        section=section,
                        key=key,
                    )
                )
                break
            found[(section, key)] = _from_env(field.annotation, environ[variable])
            break
    if issues:
        raise BadConfigError(issues)
    return found


def _from_env(annotation: Any, raw: str) -> object:
    """A variable's text as the JSON value its setting takes; left as text if it does not parse."""
    kinds = _kinds(annotation)
    if raw == "" and type(None) in kinds:
        return None
    text = raw.strip()
    if bool in kinds:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    if int in kinds:
        try:
            return int(text)
        except ValueError:
            pass
    if float in kinds:
        try:
            return float(text)
        except ValueError:
            pass
    # Validation then reports a bad value, naming the variable.
    return raw


def _kinds(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (Optional included), or the one type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return tuple(kind for arg in get_args(annotation) for kind in _kinds(arg))
    return (annotation,)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for kind in _kinds(annotation):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None


def _field(section: str | None, key: str | None) -> FieldInfo | None:
    if section is None or key is None:
        return None
    model = sections().get(section)
    if model is None:
        return None
    return model.model_fields.get(key.split(".")[0])


def _is_secret(field: FieldInfo | None) -> bool:
    if field is None:
        return False
    return any(kind in (SecretStr, SecretBytes) for kind in _kinds(field.annotation))


def _name(section: str, key: str | None) -> str:
    return f"[{section}]" if key is None else f"[{section}] {key}"


def _issue(
    error: ErrorDetails, *, text: str | None, file: Path | None, sources: Mapping[str, Source]
) -> ConfigIssue:
    """One pydantic error as a located, readable issue."""
    loc = [str(part) for part in error["loc"]]
    section = loc[0] if loc else None
    key = ".".join(loc[1:]) or None
    message = _message(error, section, key)
    variable: str | None = None
    line: int | None = None
    if section is not None and key is not None and sources.get(f"{section}.{loc[1]}") == "env":
        variable = env_var(section, loc[1])
    elif text is not None and loc:
        line = _locate(text, tuple(loc))
    if section is not None and key is None:
        # A rule across keys: some of them may have come from the environment.
        prefix = f"{section}."
        named = [
            env_var(section, dotted[len(prefix) :])
            for dotted, source in sources.items()
            if source == "env" and dotted.startswith(prefix)
        ]
        if named:
            message += f" (set in the environment: {', '.join(sorted(named))})"
    return ConfigIssue(
        message=message,
        file=None if variable else file,
        line=line,
        variable=variable,
        section=section,
        key=key,
    )


def _message(error: ErrorDetails, section: str | None, key: str | None) -> str:
    """What is wrong, what was given and what would be valid, in words."""
    kind = error["type"]
    models = sections()
    if section is None:
        return str(error["msg"])
    if kind == "extra_forbidden" and key is None:
        known = ", ".join(f"[{name}]" for name in models)
        if not isinstance(error.get("input"), dict):
            # A setting above every [section] header belongs to no section.
            owners = [
                f"[{name}]" for name, model in models.items() if section in model.model_fields
            ]
            hint = f"; it belongs under {' or '.join(owners)}" if owners else ""
            return f"{section}: a setting outside every section{hint}; the sections are {known}"
        close = _close_match(section, list(models))
        guess = f" (did you mean [{close[0]}]?)" if close else ""
        return f"unknown section [{section}]{guess}; the sections are {known}"
    if kind == "extra_forbidden" and key is not None:
        model = models.get(section)
        names = list(model.model_fields) if model is not None else []
        close = _close_match(key, names)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_name(section, key)}: unknown key{guess}; [{section}] has {', '.join(names)}"
    if key is None and kind in ("model_type", "dict_type", "model_attributes_type"):
        given = _show(error.get("input"))
        layout = f"a [{section}] header, then key = value lines"
        return f"[{section}] must be a table ({layout}), not {given}"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if key is None:
        return f"[{section}]: {msg}"
    field = _field(section, key)
    given = "(hidden)" if _is_secret(field) else _show(error.get("input"))
    text = f"{_name(section, key)}: {msg[:1].lower()}{msg[1:]}; given {given}"
    # A Literal's or an enum's message already lists every valid value, and a
    # validator's own message already says what is wrong.
    if field is not None and kind not in ("literal_error", "enum", "value_error"):
        text += f"; valid: {_describe(field)}"
    return text


def _close_match(word: str, known: list[str]) -> list[str]:
    """The known word closest to a misspelt one (none, or one): for an error message only."""
    import difflib  # here: only a refused setting needs it

    return difflib.get_close_matches(word, known, n=1)


def _describe(field: FieldInfo) -> str:
    """What a setting accepts, in words: "a number more than 0"."""
    kinds = _kinds(field.annotation)
    words = " or ".join(_describe_kind(kind) for kind in kinds if kind is not type(None))
    bounds = {type(item).__name__: item for item in field.metadata}
    low = bounds.get("Ge")
    high = bounds.get("Le")
    if isinstance(low, annotated_types.Ge) and isinstance(high, annotated_types.Le):
        words += f" from {_show(low.ge)} to {_show(high.le)}"
    else:
        limits = [_describe_limit(item) for item in field.metadata]
        words += "".join(f" {limit}" for limit in limits if limit)
    words += "".join(f", {size}" for size in map(_describe_size, field.metadata) if size)
    if type(None) in kinds:
        words += ", or leave it out"
    return words


def _describe_size(item: object) -> str:
    if isinstance(item, annotated_types.MinLen):
        return "not empty" if item.min_length == 1 else f"at least {item.min_length} long"
    if isinstance(item, annotated_types.MaxLen):
        return f"at most {item.max_length} long"
    return ""


def _describe_kind(kind: Any) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number"
    if kind is float:
        return "a number"
    if kind in (str, SecretStr, SecretBytes):
        return "a string"
    if isinstance(kind, type) and issubclass(kind, Path):
        return "a path (a string)"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(_show(value) for value in get_args(kind))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(_show(member.value) for member in kind)
    return getattr(kind, "__name__", str(kind))


def _describe_limit(item: object) -> str:
    if isinstance(item, annotated_types.Gt):
        return f"more than {_show(item.gt)}"
    if isinstance(item, annotated_types.Ge):
        return f"at least {_show(item.ge)}"
    if isinstance(item, annotated_types.Lt):
        return f"less than {_show(item.lt)}"
    if isinstance(item, annotated_types.Le):
        return f"at most {_show(item.le)}"
    return ""


def _show(value: object) -> str:
    """A given value as it would be written in TOML (a table or an array by its kind)."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "nothing"
    return _toml_value(value)


def _locate(text: str, where: tuple[str, ...]) -> int | None:
    """The line that sets where (section, key…), else the line of its table; best effort."""
    table: tuple[str, ...] = ()
    fallback: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(_ARRAY_HEADER, line):
            table = ("[[",)  # an array of tables: nothing we look for lives there
            continue
        header = re.match(_TABLE_HEADER, line)
        if header:
            table = _split_key(header.group(1))
            if table == where:
                return number
            if fallback is None and table and where[: len(table)] == table:
                fallback = number
            continue
        assignment = re.match(_KEY_LINE, line)
        if assignment is None:
            continue
        full = table + _split_key(assignment.group(1))
        if full[: len(where)] == where:
            return number
        if fallback is None and where[: len(full)] == full:
            fallback = number  # an inline table: section = { key = … }
    return fallback


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_PART, dotted)
    return tuple(part[1:-1] if part[0] in "\"'" else part for part in parts)


def _emit_table(
    lines: list[str],
    where: tuple[str, ...],
    model: BaseModel,
    origins: Mapping[str, Source] | None,
) -> None:
    """One [table] of TOML, its nested tables after it."""
    if lines:
        lines.append("")
    lines.append(f"[{'.'.join(_toml_key(part) for part in where)}]")
    nested: list[tuple[str, BaseModel]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        origin = ""
        if origins is not None:
            found = origins.get(".".join((*where, name)), "default")
            origin = f"from ${env_var(where[0], name)}" if found == "env" else found
        if value is None:
            # TOML has no null: an unset setting is left out, shown as a comment.
            lines.append(f"# {_toml_key(name)} is not set" + (f" ({origin})" if origin else ""))
            continue
        note = f"  # {origin}" if origin else ""
        lines.append(f"{_toml_key(name)} = {_toml_value(value)}{note}")
    for name, value in nested:
        _emit_table(lines, (*where, name), value, origins)


def _toml_key(key: str) -> str:
    return key if re.match(_BARE_KEY, key) else _toml_string(key)


def _toml_value(value: object) -> str:
    """One value in TOML syntax; every secret as the mask."""
    if isinstance(value, SecretStr | SecretBytes):
        return _toml_string(SECRET_MASK)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return _toml_value(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, Mapping):
        items = ", ".join(
            f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, BaseModel):
        return _toml_value({name: getattr(value, name) for name in type(value).model_fields})
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string; JSON's escapes are a subset of TOML's, DEL aside."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")
