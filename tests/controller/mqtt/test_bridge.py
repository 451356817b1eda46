"""The bridge against a real mosquitto and a fake daemon API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import socket
import ssl
from typing import Any

import pytest

from controller import api as api_module
from controller.api import COMMANDS, Request
from controller.mqtt.bridge import MqttBridge, snapshot_states
from controller.mqtt.client import MqttClient
from controller.mqtt.commands import BUTTONS, ENTITIES, STOPS
from controller.mqtt.discovery import DeviceDescription, topic_id
from controller.mqtt.settings import MqttSettings
from controller.session import DeviceSnapshot, DeviceState, SessionSnapshot, SessionState
from devices.capabilities import DeviceKind
from devices.errors import MassagedError
from tests.controller.mqtt.conftest import (
    WAIT,
    BridgeFactory,
    Broker,
    FakeAPI,
    Received,
    Spy,
    SpyFactory,
    bridge_settings,
    sample_devices,
)

SET_RESPONSE = "massaged/bridge/response/set"
VALID: dict[str, dict[str, Any]] = {
    "run": {"program": "collar-zone", "devices": ["belt"], "scale": 0.7},
    "scale": {"scale": 0.5},
    "scan": {"timeout": 1.0},
    "pair": {"address": "AA:BB:CC:DD:EE:FF", "name": "belt2", "kind": "belt"},
    "unpair": {"name": "belt"},
    "rename": {"name": "belt", "new_name": "back"},
    "set_caps": {"name": "belt", "max_intensity": 0.5},
    "history": {"limit": 5},
    "heater": {"device": "pillow", "on": True},
    "profile_set": {"name": "anna", "caps": {"belt": 0.5}},
    "well_today": {"well": True},
    "program": {"name": "collar-zone"},
    "program_check": {"text": "id = 'x'"},
    "program_save": {"name": "mine", "text": "id = 'mine'"},
    "pulse": {"name": "belt"},
}


def is_json(topic: str, **expected: Any) -> Any:
    """A predicate: a message on topic whose JSON holds the expected items."""

    def check(message: Received) -> bool:
        if message.topic != topic or not message.payload:
            return False
        data = message.json()
        return isinstance(data, dict) and all(data.get(k) == v for k, v in expected.items())

    return check


async def test_online_retained_with_info_and_devices(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    await make_bridge(username="massaged", password="hunter2")
    watcher = await spy("massaged/bridge/#")
    state = await watcher.wait_topic("massaged/bridge/state")
    assert state.retain
    assert state.json() == {"state": "online"}
    info = await watcher.wait_topic("massaged/bridge/info")
    assert info.retain
    assert info.json()["version"] == "0.1.0-test"
    assert info.json()["node_id"] == "massaged"
    assert info.json()["config"]["authenticated"] is True
    assert b"hunter2" not in info.payload
    devices = await watcher.wait_topic("massaged/bridge/devices")
    assert devices.retain
    assert [d["name"] for d in devices.json()] == ["belt", "pillow", "butterfly"]


def abort(client: MqttClient) -> None:
    """Drop the connection without DISCONNECT, as a crash would: the broker sends the will.

    The client then reconnects as after any other loss.
    """
    connection = client._client
    assert connection is not None
    # aiomqtt offers no abort of its own: shut the paho socket down under it.
    sock = connection._client.socket()
    if isinstance(sock, socket.socket | ssl.SSLSocket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def test_last_will_says_offline_when_the_connection_dies(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    # A slow reconnect leaves time to see the retained will before the bridge is back.
    bridge = await make_bridge(reconnect_min=2.0, reconnect_max=2.0)
    live = await spy("massaged/bridge/state")
    await live.wait_for(is_json("massaged/bridge/state", state="online"))
    since = len(live.messages)
    abort(bridge.client)  # no DISCONNECT: the broker must publish the will
    await live.wait_for(is_json("massaged/bridge/state", state="offline"), since=since)
    late = await spy("massaged/bridge/state")
    first = await late.wait_topic("massaged/bridge/state")
    assert first.retain
    assert first.json() == {"state": "offline"}
    await live.wait_for(is_json("massaged/bridge/state", state="online"), since=since)
    await bridge.wait_connected(WAIT)  # back by itself
    assert bridge.client.connections == 2


async def test_clean_close_says_offline(make_bridge: BridgeFactory, spy: SpyFactory) -> None:
    bridge = await make_bridge()
    await bridge.close()
    late = await spy("massaged/bridge/state")
    message = await late.wait_topic("massaged/bridge/state")
    assert message.retain
    assert message.json() == {"state": "offline"}


async def test_discovery_is_published_retained(make_bridge: BridgeFactory, spy: SpyFactory) -> None:
    await make_bridge()
    watcher = await spy("homeassistant/device/+/config")
    for object_id in ("massaged_bridge", "massaged_belt", "massaged_pillow", "massaged_butterfly"):
        message = await watcher.wait_topic(f"homeassistant/device/{object_id}/config")
        assert message.retain
        payload = message.json()
        assert payload["device"]["identifiers"] == [object_id]
    pillow = watcher.on("homeassistant/device/massaged_pillow/config")[0].json()
    belt = watcher.on("homeassistant/device/massaged_belt/config")[0].json()
    assert "heater" in pillow["components"]
    assert "heater" not in belt["components"]


async def test_no_discovery_when_turned_off(make_bridge: BridgeFactory, spy: SpyFactory) -> None:
    await make_bridge(discovery=False)
    watcher = await spy("homeassistant/#", "massaged/belt")
    await watcher.wait_topic("massaged/belt")
    assert not [m for m in watcher.messages if m.topic.startswith("homeassistant/")]


async def test_state_is_retained_rate_limited_and_the_last_one_wins(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge(state_min_interval=0.2)
    watcher = await spy("massaged/belt")
    await watcher.wait_topic("massaged/belt")
    since = len(watcher.messages)
    for n in range(50):
        bridge.device_state("belt", {"running": True, "time_left": 1000 - n, "step": f"step {n}"})
        await asyncio.sleep(0.005)
    last = await watcher.wait_for(is_json("massaged/belt", time_left=951), since=since)
    assert last.json()["step"] == "step 49"
    assert last.json()["running"] is True
    await asyncio.sleep(0.5)  # nothing more may follow the last state
    updates = watcher.messages[since:]
    assert 1 <= len(updates) <= 10, len(updates)
    assert updates[-1].json()["time_left"] == 951
    late = await spy("massaged/belt")
    retained = await late.wait_topic("massaged/belt")
    assert retained.retain
    assert retained.json()["time_left"] == 951


async def test_frequent_messages_go_at_qos_0_and_announcements_at_qos_1(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    """QoS 1 PUBACKs on a busy connection made the next command wait for a delayed ACK."""
    bridge = await make_bridge(state_min_interval=0.0)
    watcher = await spy("#")
    await watcher.wait_topic("homeassistant/device/massaged_belt/config")
    since = len(watcher.messages)
    bridge.device_state("belt", {"battery": 77})
    state = await watcher.wait_for(is_json("massaged/belt", battery=77), since=since)
    api.answers["status"] = {"ok": True}
    await watcher.request("status", {"transaction": "q"})
    response = watcher.on("massaged/bridge/response/status")[-1]
    assert (state.qos, response.qos) == (0, 0)
    for topic in (
        "massaged/bridge/state",
        "homeassistant/device/massaged_belt/config",
        "massaged/belt/availability",
    ):
        assert {m.qos for m in watcher.on(topic)} == {1}, topic


async def test_an_unchanged_state_is_not_sent_again(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge(state_min_interval=0.0)
    watcher = await spy("massaged/pillow")
    await watcher.wait_topic("massaged/pillow")
    since = len(watcher.messages)
    bridge.device_state("pillow", {"battery": 80})
    await watcher.wait_for(is_json("massaged/pillow", battery=80), since=since)
    bridge.device_state("pillow", {"battery": 80})
    bridge.device_state("pillow", {"outputs": {"speed": 2, "heater": 1}})
    message = await watcher.wait_for(is_json("massaged/pillow", heater=True), since=since)
    assert message.json()["battery"] == 80
    assert len(watcher.messages[since:]) == 2


async def test_a_state_that_is_not_json_is_refused(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge()
    bridge.device_state("belt", {"outputs": object()})
    assert "not JSON" in caplog.text


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_answers_with_its_transaction(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI, command: str
) -> None:
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    api.answers[command] = {"answer": command, "n": [1, 2]}
    payload = {**VALID.get(command, {}), "transaction": f"t-{command}"}
    answer = await client.request(command, payload)
    assert answer == {
        "status": "ok",
        "data": {"answer": command, "n": [1, 2]},
        "transaction": f"t-{command}",
    }
    assert api.commands() == [command]
    request = api.calls[0][1]
    assert isinstance(request, api_module.REQUEST_MODELS[command])
    assert request.transaction == f"t-{command}"


async def test_an_api_error_is_answered(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    api.errors["pause"] = MassagedError("no session is running")
    answer = await client.request("pause", {"transaction": 41})
    assert answer == {
        "status": "error",
        "data": {},
        "error": "no session is running",
        "transaction": 41,
    }


async def set_answer(
    watcher: Spy, topic: str, payload: bytes, *, retain: bool = False
) -> dict[str, Any]:
    """Publish on a set topic; the answer to it on massaged/bridge/response/set."""
    since = len(watcher.messages)
    await watcher.publish(topic, payload, retain=retain)
    answer = await watcher.wait_for(
        lambda m: m.topic == SET_RESPONSE and m.json()["data"].get("topic") == topic, since=since
    )
    data: dict[str, Any] = answer.json()
    return data


EMPTY_PAYLOADS = [
    pytest.param(b"", False, id="empty"),
    pytest.param(b"", True, id="retained-delete"),
    pytest.param(b" \n\t", False, id="whitespace"),
    pytest.param(b"null", False, id="null"),
    pytest.param(b" null ", False, id="spaced-null"),
]
"""Payloads that say nothing; mosquitto_pub -r -n (a retained delete) sends the second."""


@pytest.mark.parametrize(("payload", "retain"), EMPTY_PAYLOADS)
@pytest.mark.parametrize("command", ["run", "resume", "pause", "status"])
async def test_an_empty_or_null_request_is_refused_with_an_answer(
    make_bridge: BridgeFactory,
    spy: SpyFactory,
    api: FakeAPI,
    command: str,
    payload: bytes,
    retain: bool,
) -> None:
    """An empty payload is also how a retained request is deleted: it asks for nothing."""
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    since = len(client.messages)
    await client.publish(f"massaged/bridge/request/{command}", payload, retain=retain)
    message = await client.wait_topic(f"massaged/bridge/response/{command}", since=since)
    answer = message.json()
    assert answer["status"] == "error", answer
    assert f"massaged/bridge/request/{command}" in answer["error"]
    assert "JSON object" in answer["error"]
    await asyncio.sleep(0.1)
    assert api.calls == []
    assert (await client.request("status", b"{}"))["status"] == "ok"


@pytest.mark.parametrize("command", ["stop", "emergency_stop"])
@pytest.mark.parametrize(
    "payload", [b"", b" ", b"null", b"press", b"[1]", b'{"bogus": 1}', b"\xff", b"{not json"]
)
async def test_any_payload_stops(
    make_bridge: BridgeFactory,
    spy: SpyFactory,
    api: FakeAPI,
    command: str,
    payload: bytes,
) -> None:
    """Stopping is always safe: no payload keeps a stop from stopping, on a request topic
    or a device's button (test_retained_commands_are_never_carried_out: a retained one
    from the broker's store still never acts)."""
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    since = len(client.messages)
    await client.publish(f"massaged/bridge/request/{command}", payload)
    answer = await client.wait_topic(f"massaged/bridge/response/{command}", since=since)
    assert answer.json()["status"] == "ok", answer.json()
    since = len(client.messages)
    await client.publish(f"massaged/pillow/set/{command}", payload)
    answer = await client.wait_topic("massaged/bridge/response/set", since=since)
    assert answer.json()["status"] == "ok", answer.json()
    assert api.commands() == [command, command]


@pytest.mark.parametrize(
    ("command", "payload", "says"),
    [
        ("run", b"\xff\xfe\x00garbage", "UTF-8"),
        ("run", b"{not json", "not valid JSON"),
        ("run", b'{"program": 5}', "program"),
        ("run", b'{"program": "collar-zone", "scale": 2}', "scale"),
        ("scale", b'{"scale": NaN}', "NaN"),
        ("pause", b"[1, 2]", "JSON object"),
        ("pause", b'"pause"', "JSON object"),
        ("pause", b'{"bogus": 1}', "bogus"),
        ("explode", b"{}", "unknown command"),
        ("run", b'{"program": "' + b"x" * 100_000 + b'"}', "too large"),
        ("history", b'{"limit": [20]}', "limit"),
        ("rename", b'{"name": "belt"}', "new_name"),
    ],
)
async def test_bad_requests_are_answered_and_change_nothing(
    make_bridge: BridgeFactory,
    spy: SpyFactory,
    api: FakeAPI,
    command: str,
    payload: bytes,
    says: str,
) -> None:
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    answer = await client.request(command, payload)
    assert answer["status"] == "error"
    assert says in answer["error"]
    assert api.calls == []
    # The bridge goes on serving.
    assert (await client.request("status", {}))["status"] == "ok"


async def test_a_wrong_type_error_still_echoes_the_transaction(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    answer = await client.request("scale", {"scale": "loud", "transaction": "abc"})
    assert answer["status"] == "error"
    assert answer["transaction"] == "abc"
    assert api.calls == []


ENTITY_TOPICS = [
    "massaged/pillow/set",
    *(f"massaged/pillow/set/{entity}" for entity in ENTITIES if entity not in STOPS),
]
"""Every command topic of a device with a heater but the stops (any payload stops:
test_any_payload_stops): the JSON one and each entity's."""


@pytest.mark.parametrize(("payload", "retain"), EMPTY_PAYLOADS)
async def test_an_empty_payload_starts_nothing_on_any_entity_topic(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI, payload: bytes, retain: bool
) -> None:
    """Issue 11, finding 5: mosquitto_pub -t massaged/pillow/set/start -n started the pillow."""
    bridge = await make_bridge()
    watcher = await spy(SET_RESPONSE)
    for topic in ENTITY_TOPICS:
        await watcher.publish(topic, payload, retain=retain)
    await asyncio.sleep(0.3)
    assert api.calls == []
    assert bridge.selection("pillow") == ("collar-zone", 1.0)
    # Each one is answered with an error naming the topic and what it takes.
    answers: dict[str, dict[str, Any]] = {}
    while len(answers) < len(ENTITY_TOPICS):
        message = await watcher.wait_topic(SET_RESPONSE, since=len(answers))
        answers[message.json()["data"]["topic"]] = message.json()
    for topic in ENTITY_TOPICS:
        answer = answers[topic]
        assert answer["status"] == "error", (topic, answer)
        assert answer["error"].startswith(f"{topic}: "), answer
        assert "it takes" in answer["error"], answer


async def test_bad_entity_commands_are_answered_logged_and_change_nothing(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge()
    watcher = await spy("massaged/bridge/logging", "massaged/bridge/response/#", "massaged/belt")
    await watcher.wait_topic("massaged/belt")
    bad = [
        ("massaged/belt/set/scale", b"loud", "decimal number"),
        ("massaged/belt/set/scale", b"5", "decimal number"),
        ("massaged/belt/set/scale", b"nan", "decimal number"),
        ("massaged/belt/set/scale", b"0.5 ", "decimal number"),
        ("massaged/belt/set/scale", b"1e-1", "decimal number"),
        ("massaged/belt/set/scale", b"PRESS", "decimal number"),
        ("massaged/belt/set/program", b"no-such-program", "program ids"),
        ("massaged/belt/set/program", b" collar-zone", "program ids"),
        ("massaged/belt/set/start", b"BOOM", "exactly PRESS"),
        ("massaged/belt/set/start", b"press", "exactly PRESS"),
        ("massaged/belt/set/start", b"PRESS\n", "exactly PRESS"),
        ("massaged/belt/set/start", b"ON", "exactly PRESS"),
        ("massaged/belt/set/start", b'{"action": "start"}', "exactly PRESS"),
        ("massaged/belt/set/start", b"\xff\xfe", "UTF-8"),
        ("massaged/belt/set/start", b"P" * 300, "too large"),
        ("massaged/belt/set/heater", b"maybe", "exactly ON or OFF"),
        ("massaged/belt/set/heater", b"on", "exactly ON or OFF"),
        ("massaged/belt/set/heater", b"true", "exactly ON or OFF"),
        ("massaged/belt/set/heater", b"PRESS", "exactly ON or OFF"),
        ("massaged/belt/set/self_destruct", b"PRESS", "unknown entity"),
        ("massaged/belt/set/start/now", b"PRESS", "unknown entity"),
        ("massaged/belt/set", b"{garbage", "not valid JSON"),
        ("massaged/belt/set", b"{}", "sets nothing"),
        ("massaged/belt/set", b"[]", "JSON object"),
        ("massaged/belt/set", b'"start"', "JSON object"),
        ("massaged/belt/set", b"[" * 30_000, "nested too deeply"),
        ("massaged/belt/set", b'{"action": "explode"}', "action"),
        ("massaged/belt/set", b'{"action": null}', "sets nothing"),
        ("massaged/belt/set", b'{"program": "collar-zone", "scale": 7}', "scale"),
        ("massaged/belt/set", b'{"scale": "0.5"}', "scale"),
        ("massaged/belt/set", b'{"heater": "ON"}', "heater"),
        ("massaged/toaster/set/start", b"PRESS", "no such device"),
        ("massaged/bridge/set", b"{}", "no such device"),
    ]
    for topic, payload, says in bad:
        answer = await set_answer(watcher, topic, payload)
        assert answer["status"] == "error", (topic, payload, answer)
        assert answer["error"].startswith(f"{topic}: "), answer
        assert says in answer["error"], (topic, payload, answer)
    # Each is also a warning (the first few of a kind on bridge/logging too: it is rate-limited).
    entry = await watcher.wait_topic("massaged/bridge/logging")
    assert entry.json()["level"] == "warning"
    assert bad[0][0] in entry.json()["message"]
    since = len(watcher.messages)
    await watcher.publish("massaged/bridge/request/a/b", b"{}")
    refused = await watcher.wait_topic("massaged/bridge/response/a/b", since=since)
    assert "not a request topic" in refused.json()["error"]
    await asyncio.sleep(0.3)
    assert api.calls == []
    state = watcher.on("massaged/belt")[-1].json()
    assert (state["selected_program"], state["selected_scale"]) == ("collar-zone", 1.0)
    assert bridge.selection("belt") == ("collar-zone", 1.0)
    assert bridge.connected


DOCUMENTED = {
    "massaged/pillow/set": b'{"program": "evening-pillow", "scale": 0.5, "action": "start"}',
    "massaged/pillow/set/program": b"evening-pillow",
    "massaged/pillow/set/scale": b"0.5",
    **{f"massaged/pillow/set/{button}": b"PRESS" for button in BUTTONS},
    "massaged/pillow/set/heater": b"ON",
    "massaged/pillow/set/well_today": b"ON",
}
"""A payload each pillow command topic takes (it would act if it were not retained)."""


async def test_retained_commands_are_never_carried_out(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    # Retained commands would be carried out again at every reconnect: they are refused
    # (and answered) when the broker hands them over at subscribe time.
    assert set(DOCUMENTED) == {
        "massaged/pillow/set",
        *(f"massaged/pillow/set/{entity}" for entity in ENTITIES),
    }
    watcher = await spy("massaged/bridge/logging", "massaged/bridge/response/#")
    await watcher.publish("massaged/bridge/request/run", b'{"program": "collar-zone"}', retain=True)
    for topic, payload in DOCUMENTED.items():
        await watcher.publish(topic, payload, retain=True)
    bridge = await make_bridge()
    run = await watcher.wait_topic("massaged/bridge/response/run")
    assert run.json()["status"] == "error"
    assert "retained" in run.json()["error"]
    answered: set[str] = set()
    while answered != set(DOCUMENTED):
        message = await watcher.wait_for(
            lambda m: m.topic == SET_RESPONSE and m.json()["data"]["topic"] not in answered
        )
        answer = message.json()
        assert answer["status"] == "error", answer
        assert "retained" in answer["error"], answer
        answered.add(answer["data"]["topic"])
    # And a warning (on bridge/logging too).
    entry = await watcher.wait_topic("massaged/bridge/logging")
    assert "retained" in entry.json()["message"], entry.json()
    await asyncio.sleep(0.3)
    assert api.calls == []
    assert bridge.selection("pillow") == ("collar-zone", 1.0)


async def test_every_documented_payload_is_taken_and_answered(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge()
    watcher = await spy(SET_RESPONSE)
    for topic, payload in DOCUMENTED.items():
        answer = await set_answer(watcher, topic, payload)
        assert answer["status"] == "ok", (topic, answer)
    # Each button once, the heater, and the JSON topic's start; the scale and program only
    # chose what the next start uses.
    assert sorted(api.commands()) == sorted(["run", "run", *BUTTONS[1:], "heater"])
    assert bridge.selection("pillow") == ("evening-pillow", 0.5)


async def test_entities_map_onto_the_api(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge(state_min_interval=0.0)
    watcher = await spy("massaged/pillow")
    await watcher.wait_topic("massaged/pillow")
    await watcher.publish("massaged/pillow/set/program", b"evening-pillow")
    await watcher.publish("massaged/pillow/set/scale", b"0.55")
    await watcher.wait_for(
        is_json("massaged/pillow", selected_program="evening-pillow", selected_scale=0.55)
    )
    assert api.calls == []  # choosing is not running
    await watcher.publish("massaged/pillow/set/start", b"PRESS")
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert (run.program, run.devices, run.scale) == ("evening-pillow", ["pillow"], 0.55)
    assert bridge.mqtt_session
    for button in ("pause", "gentler", "stop", "emergency_stop"):
        await watcher.publish(f"massaged/pillow/set/{button}", b"PRESS")
        await api.wait_for(button)
    # While running (and paused), start resumes and the scale goes to the session too.
    bridge.device_state("pillow", {"running": True, "paused": True})
    await watcher.wait_for(is_json("massaged/pillow", paused=True))
    await watcher.publish("massaged/pillow/set/start", b"PRESS")
    await api.wait_for("resume")
    await watcher.publish("massaged/pillow/set/scale", b"0.4")
    scale = await api.wait_for("scale")
    assert isinstance(scale, api_module.ScaleRequest)
    assert scale.scale == 0.4


async def test_a_start_carries_well_today_only_on_the_day_the_switch_said_so(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    """The daemon asks whether the person is well today (issue 12): Home Assistant's Start
    button cannot say it, so the "Well today" switch does, for that day and every device."""
    bridge = await make_bridge()
    watcher = await spy("massaged/pillow", "massaged/belt")
    await watcher.publish("massaged/pillow/set/start", b"PRESS")
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert run.well_today is False
    api.calls.clear()
    await watcher.publish("massaged/pillow/set/well_today", b"ON")
    await watcher.wait_for(is_json("massaged/belt", well_today=True))
    await watcher.publish("massaged/belt/set/start", b"PRESS")
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert (run.well_today, run.accept_caution, run.override_spacing) == (True, False, False)
    api.calls.clear()
    await watcher.publish(
        "massaged/belt/set",
        b'{"action": "start", "accept_caution": true, "override_spacing": true}',
    )
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert (run.well_today, run.accept_caution, run.override_spacing) == (True, True, True)
    api.calls.clear()
    # Yesterday's word does not hold today.
    bridge._well_on = datetime.date.today() - datetime.timedelta(days=1)
    await watcher.publish("massaged/belt/set/start", b"PRESS")
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert run.well_today is False


async def test_the_set_topic_takes_json(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    watcher = await spy("massaged/belt")
    await watcher.publish(
        "massaged/belt/set",
        json.dumps({"program": "classic-three-stage", "scale": 0.3, "action": "start"}),
    )
    run = await api.wait_for("run")
    assert isinstance(run, api_module.RunRequest)
    assert (run.program, run.devices, run.scale) == ("classic-three-stage", ["belt"], 0.3)


async def test_an_api_refusal_of_a_button_goes_to_bridge_logging(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    api.errors["run"] = MassagedError("belt: not connected")
    watcher = await spy("massaged/bridge/logging")
    await watcher.publish("massaged/belt/set/start", b"PRESS")
    entry = await watcher.wait_topic("massaged/bridge/logging")
    assert "not connected" in entry.json()["message"]


async def test_heater_switch_goes_through_the_api(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    watcher = await spy("massaged/pillow")
    await watcher.publish("massaged/pillow/set/heater", b"ON")
    request = await api.wait_for("heater")
    assert request.model_dump(exclude={"transaction"}) == {"device": "pillow", "on": True}


async def test_home_assistant_birth_republishes_discovery(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    await make_bridge()
    watcher = await spy("homeassistant/device/+/config", "massaged/belt")
    topic = "homeassistant/device/massaged_belt/config"
    await watcher.wait_topic(topic)
    await watcher.wait_topic("massaged/belt")
    since = len(watcher.messages)
    await watcher.publish("homeassistant/status", b"offline")
    await watcher.publish("homeassistant/status", b"online")
    again = await watcher.wait_topic(topic, since=since)
    assert again.json()["components"]["program"]["platform"] == "select"
    await watcher.wait_topic("massaged/belt", since=since)
    assert len(watcher.on(topic)) == 2


async def test_events(make_bridge: BridgeFactory, spy: SpyFactory) -> None:
    bridge = await make_bridge()
    watcher = await spy("massaged/bridge/event", "massaged/+/event")
    bridge.publish_event("paired", {"name": "belt", "kind": "belt"})
    paired = await watcher.wait_topic("massaged/bridge/event")
    assert paired.json() == {"type": "paired", "data": {"name": "belt", "kind": "belt"}}
    bridge.session_event(None, "finished", {"devices": ["pillow"], "elapsed": 900})
    event = await watcher.wait_topic("massaged/pillow/event")
    assert event.json() == {"event_type": "finished", "devices": ["pillow"], "elapsed": 900}
    assert not event.retain
    bridge.session_event("belt", "fault", {"reason": "link lost"})
    fault = await watcher.wait_topic("massaged/belt/event")
    assert fault.json() == {"event_type": "fault", "reason": "link lost"}
    bridge.publish_event("broken", {"thing": object()})  # not JSON: refused, nothing breaks
    bridge.session_event("belt", "link_lost", {})
    await watcher.wait_for(
        lambda m: (
            m.topic == "massaged/bridge/event" and m.json()["data"].get("event") == "link_lost"
        )
    )
    assert len(watcher.on("massaged/belt/event")) == 1  # not an event entity type


async def test_device_availability_follows_the_link(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge()
    watcher = await spy("massaged/butterfly/availability")
    first = await watcher.wait_topic("massaged/butterfly/availability")
    assert first.retain
    assert first.payload == b"offline"
    bridge.device_available("butterfly", True)
    online = await watcher.wait_for(lambda m: m.payload == b"online")
    assert not online.retain
    late = await spy("massaged/butterfly/availability")
    assert (await late.wait_topic("massaged/butterfly/availability")).payload == b"online"


async def test_a_removed_device_is_removed_from_home_assistant(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge()
    watcher = await spy("homeassistant/device/+/config", "massaged/bridge/devices")
    topic = "homeassistant/device/massaged_butterfly/config"
    await watcher.wait_topic(topic)
    await watcher.wait_topic("massaged/bridge/devices")  # the retained list from before
    since = len(watcher.messages)
    bridge.set_devices(sample_devices()[:2])
    cleared = await watcher.wait_topic(topic, since=since)
    assert cleared.payload == b""
    devices = await watcher.wait_topic("massaged/bridge/devices", since=since)
    assert [d["name"] for d in devices.json()] == ["belt", "pillow"]


async def test_warnings_go_to_bridge_logging_with_secrets_masked(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    await make_bridge(username="massaged", password="hunter2")
    watcher = await spy("massaged/bridge/logging")
    logging.getLogger("controller.session").warning("link lost; token %s", "hunter2")
    logging.getLogger("controller.session").info("not forwarded")
    entry = await watcher.wait_topic("massaged/bridge/logging")
    assert entry.json()["message"] == "link lost; token ********"
    assert entry.json()["logger"] == "controller.session"
    await asyncio.sleep(0.2)
    assert len(watcher.messages) == 1


async def test_a_disabled_bridge_does_nothing(broker: Broker, api: FakeAPI) -> None:
    bridge = MqttBridge(
        MqttSettings(enabled=False, port=broker.port), api, programs=["collar-zone"]
    )
    await bridge.start()
    assert not bridge.connected
    await bridge.close()


async def test_a_slow_api_times_out(broker: Broker, api: FakeAPI, spy: SpyFactory) -> None:
    class Slow(FakeAPI):
        async def handle(self, command: str, request: Request) -> Any:
            await asyncio.sleep(30)

    bridge = MqttBridge(
        bridge_settings(broker), Slow(), programs=["collar-zone"], request_timeout=0.2
    )
    async with bridge:
        await bridge.wait_connected(WAIT)
        client = await spy("massaged/bridge/response/#")
        answer = await client.request("status", {"transaction": 1})
        assert answer["status"] == "error"
        assert "no answer" in answer["error"]


def test_snapshot_states() -> None:
    snapshot = SessionSnapshot(
        program_id="evening-pillow",
        title="Evening",
        state=SessionState.RUNNING,
        step_index=1,
        step_label="kneading",
        step_count=3,
        elapsed=60.0,
        remaining=540.4,
        duration=600.0,
        scale=0.8,
        gentler_presses=0,
        gentler_factor=1.0,
        pause_reasons=(),
        devices={
            "pillow": DeviceSnapshot(
                name="pillow",
                kind=DeviceKind.PILLOW,
                state=DeviceState.RUNNING,
                output={"speed": 2, "direction": "clockwise", "heater": 1},
                link="up",
            ),
            "belt": DeviceSnapshot(
                name="belt",
                kind=DeviceKind.BELT,
                state=DeviceState.ENDED,
                output={"motor1": 0, "heater": 0},
                link="up",
            ),
        },
    )
    states = snapshot_states(snapshot)
    assert states["pillow"] == {
        "link": "up",
        "running": True,
        "paused": False,
        "program": "evening-pillow",
        "step": "kneading",
        "time_left": 540,
        "outputs": {"speed": 2, "direction": "clockwise", "heater": 1},
        "heater": True,
    }
    assert states["belt"]["running"] is False
    assert states["belt"]["program"] is None


async def test_a_device_added_later_is_announced_with_its_state(
    make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge()
    watcher = await spy("homeassistant/device/+/config", "massaged/#")
    extra = DeviceDescription(name="Sofa pillow", kind=DeviceKind.PILLOW)
    tid = topic_id("Sofa pillow")
    bridge.device_state("Sofa pillow", {"battery": 90})
    bridge.set_devices([*sample_devices(), extra])
    discovery = await watcher.wait_topic(f"homeassistant/device/massaged_{tid}/config")
    assert discovery.json()["device"]["name"] == "Sofa pillow"
    state = await watcher.wait_topic(f"massaged/{tid}")
    assert state.json()["battery"] == 90
    assert state.json()["name"] == "Sofa pillow"
    # Its entities answer on the slugged topics.
    await watcher.publish(f"massaged/{tid}/set/program", b"evening-pillow")
    await watcher.wait_for(
        lambda m: (
            m.topic == f"massaged/{tid}" and m.json().get("selected_program") == "evening-pillow"
        )
    )


async def test_set_programs_updates_the_select(make_bridge: BridgeFactory, spy: SpyFactory) -> None:
    bridge = await make_bridge()
    watcher = await spy("homeassistant/device/massaged_belt/config")
    topic = "homeassistant/device/massaged_belt/config"
    await watcher.wait_topic(topic)
    bridge.set_programs(["my-own", "collar-zone"])
    again = await watcher.wait_topic(topic, since=1)
    assert again.json()["components"]["program"]["options"] == ["my-own", "collar-zone"]
    assert bridge.programs == ["my-own", "collar-zone"]


async def test_an_answer_that_is_not_json_becomes_an_error(
    make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    await make_bridge()
    client = await spy("massaged/bridge/response/#")
    api.answers["status"] = {"when": object()}
    answer = await client.request("status", {"transaction": "j"})
    assert answer["status"] == "error"
    assert answer["transaction"] == "j"
    assert "could not be encoded" in answer["error"]
