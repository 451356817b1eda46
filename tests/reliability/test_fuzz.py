"""Fuzzing: every parser and every way in takes arbitrary input without crashing or acting on it.

- the three wire codecs and the drivers' receive paths: arbitrary bytes never
  raise anything but FrameError and never drive an output (tests/devices/
  test_codecs.py and tests/simulator/test_firmware_*.py cover the codecs'
  round trips and the firmware's own receive paths);
- the EB1 unit's soft limit holds whatever the radio delivers (EB1 frames
  carry no checksum: the soft limit is what a corrupted frame meets);
- the program loader and the configuration loader: arbitrary text, arbitrary
  TOML, arbitrary data: only ProgramError / ConfigError;
- the API: every command with arbitrary JSON is either a valid request or an
  error answer; the API behind it only ever sees valid requests, and on a
  real daemon a bad request changes nothing and moves nothing;
- MQTT: every request and entity topic (empty, whitespace, null, near misses,
  huge, deeply nested, wrong types, retained deletes) acts only on its
  documented payloads and answers every other message with an error, on a
  real daemon over a real broker too, with nothing moving and no exception
  out of the bridge;
- the control socket: raw lines (empty, whitespace, null, huge, 30,000 ``[``,
  wrong types, invalid UTF-8, half a line then close) each get a one-line
  error answer; the connection and the daemon go on and nothing moves.

Nothing in a program file or a payload is ever executed: both are data,
parsed by tomllib / json and validated by pydantic models (test_security.py
shows it with hostile-looking values).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiomqtt
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from controller import api
from controller.config import load_config, sections
from controller.daemon import Daemon
from controller.errors import BadPayload, RequestError
from controller.mqtt.commands import ENTITIES, STOPS, parse_entity, request_fields
from devices.drivers.base import Device
from devices.drivers.eb1 import EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from devices.errors import ConfigError, FrameError
from devices.links.base import SERIAL_SOURCE
from devices.protocols import eb1, sp1, vb1
from programs.errors import ProgramError
from programs.loader import parse_program, validate_data
from simulator.endpoints.memory import MemoryLink
from simulator.firmware.base import Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.firmware.sp1 import SP1Firmware
from simulator.firmware.vb1 import VB1Firmware
from tests.reliability.world import WAIT, Mqtt, World, mqtt, world

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value (what a control-socket or MQTT client can send)."""

REQUEST_KEYS = sorted(
    {name for model in api.REQUEST_MODELS.values() for name in model.model_fields}
    | {"transaction", "", "__class__", "command"}
)
payloads = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values, max_size=5),
)
"""Arbitrary JSON, and objects made of the requests' own keys (so validation is reached)."""

toml_scalars = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf") if math.isinf(f) else repr(f)
        )
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda s: json.dumps(s)),
    st.sampled_from(["1979-05-27", "07:32:00", "[]", "[1, 2]", "{}", "{ a = 1 }", '"""x"""']),
)


def toml_text(keys: list[str], headers: list[str]) -> st.SearchStrategy[str]:
    """TOML-ish text: known and unknown keys, tables, arrays of tables, broken lines."""
    line = st.one_of(
        st.tuples(
            st.sampled_from(keys) | st.text(string.ascii_letters + "_-.", max_size=10), toml_scalars
        ).map(lambda kv: f"{kv[0]} = {kv[1]}"),
        st.sampled_from(headers),
        st.text(max_size=30),
    )
    return st.lists(line, max_size=14).map("\n".join)


PROGRAM_KEYS = [
    "id",
    "title",
    "audience",
    "max_duration",
    "description",
    "cites",
    "frequency",
    "technique",
    "zone",
    "side",
    "repetitions",
    "method_count",
    "duration_s",
    "intensity",
    "start_intensity",
    "end_intensity",
    "devices",
    "heat",
    "label",
    "cite",
]
CONFIG_KEYS = sorted({key for model in sections().values() for key in model.model_fields})
CONFIG_HEADERS = [f"[{name}]" for name in sections()] + ["[nope]", "[[daemon]]", "[mqtt.x]"]


# -- the wire: codecs -------------------------------------------------------------------


@FUZZ
@given(st.lists(st.binary(max_size=48), max_size=12))
def test_vb1_parser_returns_only_frames_that_were_sent_whole(chunks: list[bytes]) -> None:
    parser = vb1.FrameParser()
    stream = b"".join(chunks)
    for chunk in chunks:
        for frame in parser.feed(chunk):
            # Only a frame whose exact bytes (CRC included) are in the stream comes out.
            assert vb1.encode(frame) in stream


@FUZZ
@given(st.binary(max_size=40))
def test_sp1_payload_decoders_raise_only_frame_error(payload: bytes) -> None:
    for decoder in (sp1.State.decode, sp1.Info.decode):
        with contextlib.suppress(FrameError):
            decoder(payload)
    with contextlib.suppress(FrameError):
        vb1.Info.decode(payload)
    with contextlib.suppress(FrameError):
        vb1.Status.decode(payload)


# -- the wire: firmware ----------------------------------------------------------------


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_a_belt_never_moves_for_bytes_that_are_not_frames(chunks: list[bytes]) -> None:
    # No HELLO, no valid CRC: nothing may switch a motor or the heater on.
    fw = VB1Firmware("belt-1", motors=6, heater=True)
    t = 0.0
    for chunk in chunks:
        t += 0.05
        fw.receive(chunk, t)
        fw.tick(t)
        assert fw.is_quiet


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=24),
            st.binary(min_size=19, max_size=19).map(lambda b: b"\xb0" + b),
        ),
        max_size=30,
    ),
    st.integers(0, 200),
    st.integers(0, 200),
)
def test_the_ems_soft_limit_holds_whatever_the_radio_delivers(
    writes: list[bytes], limit_a: int, limit_b: int
) -> None:
    # A corrupted B0 (no checksum in EB1) can set any strength: never past the soft limit.
    fw = EB1Firmware("butterfly-1", soft_limits=(limit_a, limit_b))
    t = 0.0
    for data in writes:
        if data[:1] == b"\xbf":
            continue  # BF is how the host sets the limit: not a corrupted B0
        t += 0.03
        fw.receive(data, t, source=eb1.WRITE_UUID)
        fw.tick(t)
        strength_a, strength_b = fw.strengths
        assert strength_a <= limit_a
        assert strength_b <= limit_b
        assert fw.effective_outputs[0] <= limit_a
        assert fw.effective_outputs[1] <= limit_b


@FUZZ
@given(st.lists(st.binary(max_size=24), max_size=30), st.booleans())
def test_a_pillow_only_ever_runs_at_a_speed_it_has(writes: list[bytes], heater: bool) -> None:
    fw = SP1Firmware("pillow-1", heater=heater)
    t = 0.0
    for data in writes:
        t += 0.05
        fw.receive(data, t, source=sp1.DATA_UUID)
        fw.tick(t)
        assert 0 <= fw.knead_speed <= sp1.MAX_SPEED
        assert heater or not fw.heat


# -- the wire: drivers --------------------------------------------------------------------

SOURCES = {
    "belt": [SERIAL_SOURCE, "6e400003-b5a3-f393-e0a9-e50e24dcca9e"],
    "pillow": [sp1.DATA_UUID, "0000ffe2-0000-1000-8000-00805f9b34fb"],
    "butterfly": [eb1.NOTIFY_UUID, eb1.BATTERY_UUID, eb1.WRITE_UUID],
}


def _pair(kind: str) -> tuple[Device, Firmware, MemoryLink]:
    now = asyncio.get_running_loop().time()
    fw: Firmware
    device: Device
    if kind == "belt":
        fw = VB1Firmware("belt-1", motors=6, heater=True, now=now)
        link = MemoryLink(fw)
        device = VB1Driver(link, name="belt-1")
    elif kind == "pillow":
        fw = SP1Firmware("pillow-1", heater=True, now=now)
        link = MemoryLink(fw)
        device = SP1Driver(link, name="pillow-1")
    else:
        fw = EB1Firmware("butterfly-1", now=now)
        link = MemoryLink(fw)
        device = EB1Driver(link, name="butterfly-1")
    return device, fw, link


async def _feed_driver(kind: str, chunks: list[tuple[int, bytes]]) -> None:
    device, fw, link = _pair(kind)
    await device.connect(timeout=5.0)
    try:
        sources = SOURCES[kind]
        for index, data in chunks:
            # As the link delivers a notification or a chunk of serial bytes.
            link._deliver(sources[index % len(sources)], data)
        await asyncio.sleep(0.05)  # whatever the driver does about it, it does now
        assert fw.is_quiet, fw.outputs
        assert device.output.is_zero
    finally:
        await device.close()


def _b(prefix: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=20).map(lambda b: bytes((prefix,)) + b)


driver_chunks = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.one_of(
            st.binary(max_size=40),
            _b(vb1.SOF),
            _b(0x55).map(lambda b: b[:1] + b"\xaa" + b[1:]),
            _b(0xB1),
            _b(0xBE),
            # Well-formed answers nobody asked for: events, NAKs, STATEs, B1s.
            st.sampled_from(
                [
                    vb1.encode(vb1.event(vb1.EventCode.STOP_BUTTON)),
                    vb1.encode(vb1.event(vb1.EventCode.WATCHDOG_STOP)),
                    vb1.encode(vb1.nak(9, vb1.Command.SET_LEVELS, vb1.NakCode.OVERHEAT)),
                    vb1.encode(vb1.Frame(0, 0x90, b"\x09")),
                    sp1.encode(sp1.Frame(sp1.Command.STATE, bytes([3, 2, 1, 60, 5, 7, 0, 1]))),
                    sp1.encode(sp1.Frame(sp1.Command.INFO, bytes(5))),
                    eb1.encode(eb1.B1(0, 200, 200)),
                    eb1.encode(eb1.B1(7, 50, 0)),
                    eb1.encode(eb1.BE(200, 200)),
                ]
            ),
        ),
    ),
    max_size=25,
)


@SLOW_FUZZ
@pytest.mark.parametrize("kind", ["belt", "pillow", "butterfly"])
@given(chunks=driver_chunks)
def test_a_driver_never_acts_on_what_it_receives(
    kind: str, chunks: list[tuple[int, bytes]]
) -> None:
    asyncio.run(_feed_driver(kind, chunks))


# -- program files -------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=300))
def test_program_text_raises_only_program_error(text: str) -> None:
    with contextlib.suppress(ProgramError):
        parse_program(text, source="fuzz.toml")


@FUZZ
@given(
    toml_text(PROGRAM_KEYS, ["[[steps]]", "[steps]", "[[steps.x]]", "[meta]"]),
)
# A technique that is not text crashed the loader's error report (TypeError: unhashable).
@example("[[steps]]\ntechnique = []")
def test_program_toml_raises_only_program_error(text: str) -> None:
    with contextlib.suppress(ProgramError):
        parse_program(text, source="fuzz.toml")


program_data = st.tuples(
    st.dictionaries(st.sampled_from(PROGRAM_KEYS) | st.text(max_size=8), json_values, max_size=10),
    st.fixed_dictionaries(
        {},
        optional={
            "steps": json_values
            | st.lists(st.dictionaries(st.sampled_from(PROGRAM_KEYS), json_values))
        },
    ),
).map(lambda parts: {**parts[0], **parts[1]})
"""A program's data: any keys with any JSON, and often steps, as any JSON or a list of tables.

Tables of step keys go under "steps" only: the one field whose items are validated (any
other field refuses a list as a whole, whatever is in it), so every example that draws
them reaches the steps' validation.
"""


@FUZZ
@given(program_data)
@example({"steps": [{"technique": []}, {"technique": {"a": 1}}]})
def test_program_data_raises_only_program_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ProgramError):
        validate_data(data, source="fuzz")


# -- the configuration ---------------------------------------------------------------------


@contextlib.contextmanager
def _config_file(text: str) -> Iterator[tuple[Path, dict[str, str]]]:
    with tempfile.TemporaryDirectory(prefix="msd-fz-") as folder:
        path = Path(folder) / "config.toml"
        path.write_text(text, encoding="utf-8")
        env = {"MASSAGED_CONFIG_DIR": folder, "MASSAGED_DATA_DIR": folder}
        yield path, env


@FUZZ
@given(st.text(max_size=300) | toml_text(CONFIG_KEYS, CONFIG_HEADERS))
def test_configuration_text_raises_only_config_error(text: str) -> None:
    with _config_file(text) as (path, env), contextlib.suppress(ConfigError):
        load_config(path, environ=env)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                f"MASSAGED_{s.upper()}_{k.upper()}"
                for s, m in sections().items()
                for k in m.model_fields
            ]
            + ["MASSAGED_DAEMON_NOPE", "MASSAGED_MQTT_", "MASSAGED_NOPE_X"]
        ),
        st.text(max_size=20),
        max_size=6,
    )
)
def test_configuration_environment_raises_only_config_error(variables: dict[str, str]) -> None:
    with _config_file("") as (path, env), contextlib.suppress(ConfigError):
        load_config(path, environ={**env, **variables})


@FUZZ
@given(st.binary(max_size=200))
def test_configuration_bytes_raise_only_config_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="msd-fz-") as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(raw)
        with contextlib.suppress(ConfigError):
            load_config(path, environ={"MASSAGED_CONFIG_DIR": folder})


# -- the API ---------------------------------------------------------------------------------


class RecordingAPI:
    """A DaemonAPI that records what reaches it and answers a fixed value."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, api.Request]] = []

    async def handle(self, command: str, request: api.Request) -> Any:
        """Record the request."""
        self.calls.append((command, request))
        return {"done": command}


@FUZZ
@given(st.sampled_from([*api.COMMANDS, "", "nope", "_cmd_run", "__init__"]), payloads)
def test_every_command_takes_any_json(command: str, payload: Any) -> None:
    fake = RecordingAPI()
    answer = asyncio.run(api.dispatch(fake, command, payload))
    try:
        request = api.parse_request(command, payload)
    except RequestError:
        # Invalid: an error answer, and the API behind never saw it.
        assert answer["status"] == "error", answer
        assert isinstance(answer["error"], str)
        assert answer["error"]
        assert fake.calls == []
        return
    # Valid: the API got exactly the validated request, of the command's own model.
    assert answer["status"] == "ok", answer
    assert len(fake.calls) == 1
    called, seen = fake.calls[0]
    assert called == command
    assert type(seen) is api.REQUEST_MODELS[command]
    assert seen == request
    assert type(seen).model_validate(seen.model_dump()) == seen
    json.dumps(answer)  # every answer can be sent back


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[asyncio.AbstractEventLoop, World]]:
    """One daemon with simulated devices, kept for the module (its loop is driven by hand)."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()

    async def enter() -> World:
        return await stack.enter_async_context(world())

    try:
        w = loop.run_until_complete(enter())
        yield loop, w
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@SLOW_FUZZ
@given(st.sampled_from(api.COMMANDS), payloads)
def test_a_bad_request_changes_nothing_on_a_real_daemon(
    live: tuple[asyncio.AbstractEventLoop, World], command: str, payload: Any
) -> None:
    loop, w = live
    try:
        api.parse_request(command, payload)
    except RequestError:
        pass
    else:
        return  # valid requests are the other tests' business (they take real time)
    daemon: Daemon = w.daemon
    sessions = len(w.store.list_sessions(None))
    registry = w.store.list_devices()
    answer = loop.run_until_complete(api.dispatch(daemon, command, payload))
    assert answer["status"] == "error", answer
    assert daemon.runner is None
    assert len(w.store.list_sessions(None)) == sessions
    assert w.store.list_devices() == registry
    assert w.quiet()


# -- MQTT messages ---------------------------------------------------------------------------

ENTITY_TOPICS = [
    f"massaged/{device}/set{f'/{entity}' if entity else ''}"
    for device in ("belt", "pillow", "butterfly")
    for entity in ("", *ENTITIES)
]
"""Every command topic of the sample devices: the JSON one and each entity's."""
MQTT_TOPICS = [
    *(f"massaged/bridge/request/{command}" for command in api.COMMANDS),
    "massaged/bridge/request/",
    "massaged/bridge/request/run/x",
    "massaged/bridge/request/nope",
    *ENTITY_TOPICS,
    "massaged/butterfly/set/x/y",
    "massaged/nobody/set",
    "massaged/nobody/set/start",
    "homeassistant/status",
    "massaged/belt",
]
NOTHING = [
    b"",
    b" ",
    b"\n",
    b" \t\r\n ",
    b"null",
    b" null\n",
    b"NULL",
    b"None",
    b'""',
    b"{}",
    b"[]",
]
"""Payloads that say nothing: empty (a retained delete), whitespace, null in its spellings."""
WORDS = [b"ON", b"OFF", b"PRESS", b"press", b"PRESS ", b" PRESS", b"PRESS\n", b"on", b"true"]
WORDS += [b"1", b"0", b"0.5", b"1.0", b"0.05", b"-0.5", b"NaN", b"1e-1", b"online"]
WORDS += [b"collar-zone", b"fault-matrix", b"evening-pillow", b"start", b"emergency_stop"]
"""The documented payloads and their near misses, on every topic (each is wrong on most)."""
mqtt_payloads = st.one_of(
    st.sampled_from(NOTHING + WORDS),
    st.binary(max_size=80),
    payloads.map(lambda value: json.dumps(value).encode()),
    # Huge, and nested far past any request.
    st.integers(257, 70_000).map(lambda n: b"P" * n),
    st.integers(17, 40_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(17, 40_000).map(lambda n: b'{"action": ' + b"[" * n),
)
"""What a client can publish: nothing, near misses, bytes, any JSON, huge, deeply nested."""


def _documented(
    topic: str,
    payload: bytes,
    programs: list[str],
    devices: tuple[str, ...] = ("belt", "pillow", "butterfly"),
) -> bool:
    """True when a message on a device's set topic is one its table takes (it would act)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[2] != "set" or parts[1] not in devices:
        return False
    try:
        parse_entity(parts[3:], payload, programs)
    except BadPayload:
        return False
    return True


def _valid_request(topic: str, payload: bytes) -> bool:
    """True when a request topic and payload make a request the API takes."""
    command = topic.removeprefix("massaged/bridge/request/")
    try:
        api.parse_request(command, request_fields(payload, command))
    except (BadPayload, RequestError):
        return False
    return True


def _request_object(command: str, payload: bytes) -> bool:
    """True when a request payload is a JSON object (what a request topic takes)."""
    try:
        request_fields(payload, command)
    except BadPayload:
        return False
    return True


async def _mqtt_message(
    topic: str, payload: bytes, retained: bool
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], tuple[str, float]]:
    """One message through a bridge over a recording API: the API calls, the answers sent
    and the pillow's selection afterwards."""
    from controller.mqtt.bridge import MqttBridge
    from controller.mqtt.settings import MqttSettings
    from tests.controller.mqtt.conftest import sample_devices

    fake = RecordingAPI()
    bridge = MqttBridge(
        MqttSettings(enabled=True, port=1), fake, programs=["collar-zone"], version="fuzz"
    )
    bridge.set_devices(sample_devices())
    sent: list[tuple[str, Any]] = []

    async def publish(topic: str, payload: Any, **_: Any) -> None:
        if "/bridge/response/" in topic:  # the answers (not discovery, state, ...)
            sent.append((topic, json.loads(payload)))

    bridge.client.publish = publish  # type: ignore[method-assign]
    # As the MQTT client hands over a received message: through its delivery, which
    # logs whatever a message makes the bridge raise and goes on serving.
    message = SimpleNamespace(topic=SimpleNamespace(value=topic), payload=payload, retain=retained)
    await bridge.client._deliver(cast(aiomqtt.Message, message))
    while bridge._tasks:
        await asyncio.gather(*bridge._tasks, return_exceptions=True)
    return list(fake.calls), sent, bridge.selection("pillow")


@FUZZ
@given(st.sampled_from(MQTT_TOPICS), mqtt_payloads, st.booleans())
@example(topic="massaged/pillow/set/start", payload=b"", retained=False)
@example(topic="massaged/bridge/request/resume", payload=b"", retained=False)
@example(topic="homeassistant/status", payload=b"online", retained=False)
def test_any_mqtt_message_reaches_the_api_only_as_a_valid_request(
    topic: str, payload: bytes, retained: bool
) -> None:
    calls, answers, selection = asyncio.run(_mqtt_message(topic, payload, retained))
    for command, request in calls:
        # Whatever came in, the API saw only requests its own models validated.
        assert command in api.REQUEST_MODELS, command
        assert type(request) is api.REQUEST_MODELS[command]
    if retained:
        assert calls == [], "a retained command is never carried out"
    is_request = topic.startswith("massaged/bridge/request/")
    is_set = topic.split("/")[2:3] == ["set"]
    command = topic.rsplit("/", 1)[-1]
    is_stop = (is_request or is_set) and command in STOPS
    if payload.strip() in (b"", b"null"):
        if is_stop:  # stopping is always safe: any payload stops, and nothing else
            assert {c for c, _ in calls} <= STOPS, calls
        else:
            assert calls == [], "an empty, whitespace or null payload starts nothing"
    if is_request and calls:
        assert _request_object(command, payload), "a request acts only on a JSON object"
    if is_set and (calls or selection != ("collar-zone", 1.0)):
        assert _documented(topic, payload, ["collar-zone"]), "an entity acts only on its payloads"
    if is_request or is_set:
        # Every command message is answered, once, on its response topic.
        expected = (
            "massaged/bridge/response/set"
            if is_set
            else topic.replace("/bridge/request/", "/bridge/response/", 1)
        )
        assert [t for t, _ in answers] == [expected], answers
        answer = answers[0][1]
        if is_set:
            takes = _documented(topic, payload, ["collar-zone"])
        else:
            takes = _valid_request(topic, payload)
        # The recording API says yes to all it gets: only what the topic refused is an error.
        assert answer["status"] == ("ok" if takes and not retained else "error"), answer
        if answer["status"] == "error":
            assert answer["error"], answer
            assert calls == []
    else:
        assert answers == []


# -- MQTT and the control socket on a real daemon --------------------------------------------

BUS = ("belt-1", "pillow-1", "butterfly-1")
"""The world's devices (their names are their topic levels)."""


class _Errors(logging.Handler):
    """Keeps every ERROR record: an exception out of the bridge is logged so."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep it."""
        self.records.append(record)


@pytest.fixture(scope="module")
def live_mqtt(
    live: tuple[asyncio.AbstractEventLoop, World],
) -> Iterator[tuple[asyncio.AbstractEventLoop, World, Mqtt, _Errors]]:
    """The live daemon's MQTT bridge on a broker of its own, and a client, for the module."""
    loop, w = live
    stack = contextlib.AsyncExitStack()
    errors = _Errors()
    logging.getLogger("controller.mqtt").addHandler(errors)

    async def enter() -> Mqtt:
        return await stack.enter_async_context(mqtt(w))

    try:
        yield loop, w, loop.run_until_complete(enter()), errors
    finally:
        logging.getLogger("controller.mqtt").removeHandler(errors)
        loop.run_until_complete(stack.aclose())


def _unchanged(w: World) -> tuple[Any, ...]:
    """What a refused message must leave as it was: sessions, registry, outputs."""
    return (
        len(w.store.list_sessions(None)),
        w.store.list_devices(),
        w.daemon.runner is None,
        w.quiet(),
    )


async def _reset(w: World) -> None:
    """Stop whatever an earlier failing example started, so each example starts at rest."""
    if w.session_running():
        await w.call("emergency_stop")
        await w.wait_ended()


real_targets = st.sampled_from(
    [
        *(f"massaged/{d}/set{f'/{e}' if e else ''}" for d in BUS for e in ("", *ENTITIES)),
        *(f"massaged/bridge/request/{command}" for command in api.COMMANDS),
        "massaged/nobody/set/start",
        "massaged/bridge/request/",
        "massaged/bridge/request/run/now",
    ]
)


@SLOW_FUZZ
@given(real_targets, mqtt_payloads, st.booleans())
# Issue 11, finding 5 (mosquitto_pub -t massaged/pillow/set/start -n), and its cousins.
@example(topic="massaged/pillow-1/set/start", payload=b"", retained=False)
@example(topic="massaged/pillow-1/set/start", payload=b"", retained=True)
@example(topic="massaged/belt-1/set", payload=b"null", retained=False)
@example(topic="massaged/bridge/request/resume", payload=b" ", retained=False)
def test_no_bad_mqtt_command_moves_a_device_on_a_real_daemon(
    live_mqtt: tuple[asyncio.AbstractEventLoop, World, Mqtt, _Errors],
    topic: str,
    payload: bytes,
    retained: bool,
) -> None:
    """Issue 11: entity and request topics, fuzzed over a broker: nothing but an error answer."""
    loop, w, m, errors = live_mqtt
    bridge = m.bridge
    loop.run_until_complete(_reset(w))
    is_set = topic.split("/")[2:3] == ["set"]
    if is_set:
        assume(not _documented(topic, payload, bridge.programs, BUS))
    else:
        assume(not _valid_request(topic, payload))  # a valid one: the other tests' business
    before = _unchanged(w)
    selections = {name: bridge.selection(name) for name in BUS}
    logged = len(errors.records)

    async def exchange() -> dict[str, Any]:
        client = m.client
        since = len(client.messages)
        await client.publish(topic, payload, retain=retained)
        try:
            if is_set:
                answer = await client.wait_for(
                    lambda r: (
                        r.topic == "massaged/bridge/response/set"
                        and r.json()["data"].get("topic") == topic
                    ),
                    since=since,
                )
            else:
                answer = await client.wait_topic(
                    topic.replace("/bridge/request/", "/bridge/response/", 1), since=since
                )
        except TimeoutError:
            seen = [(r.topic, r.payload[:80]) for r in client.messages[since:]]
            pytest.fail(f"no answer (bridge connected: {bridge.connected}); seen: {seen}")
        await asyncio.sleep(0.02)  # anything it set off would be on its way now
        data: dict[str, Any] = answer.json()
        return data

    answer = loop.run_until_complete(exchange())
    assert answer["status"] == "error", answer
    assert answer["error"], answer
    assert _unchanged(w) == before
    assert {name: bridge.selection(name) for name in BUS} == selections
    assert errors.records[logged:] == [], "an exception escaped while handling a message"
    assert bridge.connected


# The control socket: raw lines, as any local process can write them.

HUGE = b'{"command": "status", "payload": "' + b"x" * (64 * 1024) + b'"}'
"""Longer than any request line may be."""
bad_lines = (
    st.one_of(
        st.sampled_from(NOTHING + WORDS),
        st.sampled_from(
            [
                b'{"command": 5}',
                b'{"command": null}',
                b'{"command": ["run"]}',
                b'{"command": {"run": 1}}',
                b'{"payload": {}}',
                b'{"command": "run"}',
                b'{"command": "run", "payload": null}',
                b'{"command": "run", "payload": ""}',
                b'{"command": "run", "payload": []}',
                b'{"command": "run", "payload": "fault-matrix"}',
                b'{"command": "scale", "payload": {"scale": "0.5"}}',
                b'{"command": "emergency-stop"}',
                b'{"command": "__init__"}',
            ]
        ),
        st.integers(17, 40_000).map(lambda n: b"[" * n),
        st.integers(17, 40_000).map(lambda n: b'{"command": "run", "payload": ' + b"[" * n),
        st.integers(17, 40_000).map(lambda n: b'{"command": "status", "payload": ' + b"{" * n),
        st.binary(max_size=60).map(lambda b: b"\xff" + b.replace(b"\n", b"")),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.tuples(st.sampled_from([*api.COMMANDS, "", "nope"]), payloads).map(
            lambda cp: json.dumps({"command": cp[0], "payload": cp[1]}).encode()
        ),
    )
    .map(lambda line: line.replace(b"\n", b""))
    .filter(lambda line: not _valid_line(line))
)
"""Lines (no newline inside) that are not a valid request (a valid one would do what it says)."""


def _valid_line(line: bytes) -> bool:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict) or not isinstance(message.get("command"), str):
        return False
    try:
        api.parse_request(message["command"], message.get("payload"))
    except RequestError:
        return False
    return True


async def _read_answer(reader: asyncio.StreamReader, sent: bytes) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        line = await reader.readline()
    assert line.endswith(b"\n"), f"no answer to {sent[:60]!r}... ({len(sent)} bytes): {line!r}"
    answer = json.loads(line)
    assert isinstance(answer, dict), answer
    return answer


@SLOW_FUZZ
@given(
    st.lists(bad_lines, min_size=1, max_size=4),
    st.sampled_from(["status", "huge", "partial"]),
)
# Issue 11, finding 8: 30,000 [ raised RecursionError and dropped the connection unanswered.
@example(lines=[b"[" * 30_000], ending="status")
@example(lines=[b"", b" ", b"null"], ending="partial")
def test_any_line_on_the_control_socket_is_answered_and_moves_nothing(
    live: tuple[asyncio.AbstractEventLoop, World], lines: list[bytes], ending: str
) -> None:
    """Issue 11: every bad line gets a one-line error; the connection and the daemon go on."""
    loop, w = live
    loop.run_until_complete(_reset(w))
    before = _unchanged(w)

    async def exchange() -> None:
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_unix_connection(str(w.socket), limit=2**20)
        try:
            for line in lines:
                writer.write(line + b"\n")
                answer = await _read_answer(reader, line)
                assert answer["status"] == "error", (line[:60], answer)
                assert answer["error"], answer
            if ending == "status":
                # The same connection still serves.
                writer.write(b'{"command": "status"}\n')
                assert (await _read_answer(reader, b"status"))["status"] == "ok"
            elif ending == "huge":
                # Refused with an answer; the server may close this connection (it says so).
                writer.write(HUGE + b"\n")
                answer = await _read_answer(reader, HUGE)
                assert answer["status"] == "error", answer
            else:
                # Half a request, then the client goes: it is answered, never carried out.
                writer.write(b'{"command": "emergency_st')
                writer.write_eof()
                answer = await _read_answer(reader, b"partial")
                assert answer["status"] == "error", answer
                async with asyncio.timeout(WAIT):
                    assert await reader.read() == b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        # The daemon serves a new connection.
        assert (await w.call("status"))["status"] == "ok"

    loop.run_until_complete(exchange())
    assert _unchanged(w) == before
