"""Home Assistant discovery payloads, checked as pure data (no broker needed)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from controller.errors import BadPayload
from controller.mqtt.commands import ENTITIES, STOPS, SetRequest, parse_entity, request_fields
from controller.mqtt.discovery import (
    SESSION_EVENT_TYPES,
    DeviceDescription,
    Topics,
    bridge_discovery,
    device_discovery,
    device_info,
    topic_id,
)
from controller.store import DeviceRecord
from devices.capabilities import DeviceKind
from tests.controller.mqtt.conftest import PROGRAMS, sample_devices

TOPICS = Topics("massaged", "massaged", "homeassistant")
ID = re.compile(r"^[A-Za-z0-9_-]+$")
DISCOVERY_TOPIC = re.compile(r"^homeassistant/device/([A-Za-z0-9_-]+)/config$")
# What each Home Assistant MQTT platform needs (the required keys of its schema).
REQUIRED = {
    "select": {"command_topic", "options"},
    "number": {"command_topic"},
    "button": {"command_topic"},
    "switch": {"command_topic"},
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
}


def all_payloads() -> list[tuple[str, dict[str, Any]]]:
    found = [bridge_discovery(TOPICS, "0.1.0", "https://example.org/massaged")]
    found += [device_discovery(TOPICS, d, PROGRAMS, "0.1.0") for d in sample_devices()]
    return found


def by_name(name: str) -> dict[str, Any]:
    description = next(d for d in sample_devices() if d.name == name)
    return device_discovery(TOPICS, description, PROGRAMS, "0.1.0")[1]


def test_every_payload_is_json_with_the_required_keys() -> None:
    for topic, payload in all_payloads():
        match = DISCOVERY_TOPIC.match(topic)
        assert match, topic
        assert json.loads(json.dumps(payload, allow_nan=False)) == payload
        assert match.group(1) in payload["device"]["identifiers"]
        assert payload["device"]["name"]
        assert payload["origin"]["name"] == "massaged"
        assert payload["origin"]["sw_version"] == "0.1.0"
        assert payload["availability_mode"] == "all"
        assert payload["components"]
        for cid, component in payload["components"].items():
            assert ID.match(cid), cid
            platform = component["platform"]
            assert REQUIRED[platform] <= set(component), (cid, platform)
            assert component["name"]
            assert ID.match(component["unique_id"])


def test_support_url_only_when_known() -> None:
    bridge = bridge_discovery(TOPICS, "1", "https://example.org/massaged")[1]
    assert bridge["origin"]["support_url"] == "https://example.org/massaged"
    assert "support_url" not in by_name("belt")["origin"]


def test_unique_ids_are_unique_and_name_the_node_and_device() -> None:
    ids = [(topic, c["unique_id"]) for topic, p in all_payloads() for c in p["components"].values()]
    assert len({uid for _, uid in ids}) == len(ids)
    for _, uid in ids:
        assert uid.startswith("massaged_")
    other = Topics("massaged", "bedroom", "homeassistant")
    belt = device_discovery(other, sample_devices()[0], PROGRAMS, "1")[1]
    assert all(c["unique_id"].startswith("bedroom_belt_") for c in belt["components"].values())


def test_availability_is_bridge_and_device() -> None:
    payload = by_name("pillow")
    availability = payload["availability"]
    assert [a["topic"] for a in availability] == [
        "massaged/bridge/state",
        "massaged/pillow/availability",
    ]
    assert availability[0]["value_template"] == "{{ value_json.state }}"
    for entry in availability:
        assert (entry["payload_available"], entry["payload_not_available"]) == (
            "online",
            "offline",
        )
    bridge = bridge_discovery(TOPICS, "1")[1]
    assert [a["topic"] for a in bridge["availability"]] == ["massaged/bridge/state"]


def test_via_device_is_the_bridge() -> None:
    bridge = bridge_discovery(TOPICS, "1")[1]
    for description in sample_devices():
        payload = device_discovery(TOPICS, description, PROGRAMS, "1")[1]
        assert payload["device"]["via_device"] == bridge["device"]["identifiers"][0]


def test_heater_only_where_fitted() -> None:
    assert "heater" in by_name("pillow")["components"]
    assert "heater" not in by_name("belt")["components"]
    assert "heater" not in by_name("butterfly")["components"]
    unknown = DeviceDescription(name="new", kind=DeviceKind.PILLOW)  # never connected yet
    assert "heater" not in device_discovery(TOPICS, unknown, PROGRAMS, "1")[1]["components"]
    heater = by_name("pillow")["components"]["heater"]
    assert heater["platform"] == "switch"
    assert heater["command_topic"] == "massaged/pillow/set/heater"
    assert (heater["payload_on"], heater["payload_off"]) == ("ON", "OFF")


def test_entities() -> None:
    components = by_name("belt")["components"]
    program = components["program"]
    assert program["platform"] == "select"
    assert program["options"] == PROGRAMS
    assert program["command_topic"] == "massaged/belt/set/program"
    scale = components["scale"]
    assert (scale["platform"], scale["min"], scale["max"], scale["step"]) == (
        "number",
        0.1,
        1.0,
        0.05,
    )
    assert scale["json_attributes_topic"] == "massaged/belt/info"
    for button in ("start", "pause", "stop", "emergency_stop", "gentler"):
        assert components[button]["platform"] == "button"
        assert components[button]["command_topic"] == f"massaged/belt/set/{button}"
        assert components[button]["payload_press"] == "PRESS"
    assert components["running"]["platform"] == "binary_sensor"
    assert components["running"]["state_topic"] == "massaged/belt"
    assert components["step"]["platform"] == "sensor"
    time_left = components["time_left"]
    assert (time_left["device_class"], time_left["unit_of_measurement"]) == ("duration", "s")
    battery = components["battery"]
    assert (battery["device_class"], battery["entity_category"]) == ("battery", "diagnostic")
    assert battery["unit_of_measurement"] == "%"
    session = components["session"]
    assert session["platform"] == "event"
    assert session["event_types"] == list(SESSION_EVENT_TYPES)
    assert set(SESSION_EVENT_TYPES) == {"finished", "stopped", "emergency_stop", "cut", "fault"}
    assert session["state_topic"] == "massaged/belt/event"


def test_bridge_device_offers_stop_all() -> None:
    components = bridge_discovery(TOPICS, "1")[1]["components"]
    assert components["emergency_stop"]["command_topic"] == "massaged/bridge/request/emergency_stop"
    assert components["stop"]["command_topic"] == "massaged/bridge/request/stop"
    assert components["emergency_stop"]["payload_press"] == "{}"


def test_limits_describe_the_real_device() -> None:
    belt, pillow, butterfly = (device_info(d) for d in sample_devices())
    assert belt["limits"]["protocol_maximum"] == 255
    assert belt["limits"]["effective_maximum"] == 204  # 255 × the belt's cap 0.8
    assert len(belt["limits"]["motors"]) == 6
    assert belt["limits"]["session_limit_s"] == {"adult": 1800.0, "child": 900.0}
    assert pillow["limits"]["kneading"]["max_speed"] == 3
    assert pillow["limits"]["heater_limit_s"] == {"adult": 1200.0, "child": 600.0}
    channels = butterfly["limits"]["ems_channels"]
    assert [(c["name"], c["max_strength"], c["max_raise_per_100ms"]) for c in channels] == [
        ("A", 200, 5),
        ("B", 200, 5),
    ]
    json.dumps([belt, pillow, butterfly], allow_nan=False)


def test_from_record() -> None:
    record = DeviceRecord(
        name="Sofa pillow",
        kind=DeviceKind.PILLOW,
        address="AA:BB:CC:DD:EE:FF",
        transport="ble",
        caps={"pillow": 0.5},
    )
    description = DeviceDescription.from_record(record)
    assert (description.kind, description.max_intensity) == (DeviceKind.PILLOW, 0.5)
    topic, payload = device_discovery(TOPICS, description, PROGRAMS, "1")
    assert DISCOVERY_TOPIC.match(topic)
    assert payload["device"]["name"] == "Sofa pillow"


@pytest.mark.parametrize("name", ["Sofa pillow", "a/b", "plus+", "hash#", "bridge", "Ünïcode"])
def test_topic_ids_are_safe_and_distinct(name: str) -> None:
    tid = topic_id(name)
    assert ID.match(tid)
    assert tid != "bridge"
    assert topic_id(name) == tid  # stable
    assert tid != topic_id(name + " ")


def test_safe_names_are_kept() -> None:
    assert topic_id("belt") == "belt"
    assert topic_id("pillow-2") == "pillow-2"


def home_assistant_sends(component: dict[str, Any]) -> list[str]:
    """Every payload Home Assistant may publish on a component's command topic."""
    platform = component["platform"]
    if platform == "button":
        return [component.get("payload_press", "PRESS")]
    if platform == "switch":
        return [component.get("payload_on", "ON"), component.get("payload_off", "OFF")]
    if platform == "select":
        return list(component["options"])
    assert platform == "number", platform
    low, high, step = component["min"], component["max"], component["step"]
    values = [round(low + k * step, 6) for k in range(round((high - low) / step) + 1)]
    # HA's MQTT number sends an integral value as an int ("1"), any other as str(float).
    return [str(int(v)) if float(v).is_integer() else str(v) for v in values]


def test_discovery_announces_exactly_what_the_bridge_takes() -> None:
    """One definition: what HA is told to send is what the bridge accepts, and nothing else."""
    for description in sample_devices():
        components = device_discovery(TOPICS, description, PROGRAMS, "1")[1]["components"]
        commands = {
            cid: c for cid, c in components.items() if c.get("command_topic", "").count("/set/")
        }
        assert set(commands) <= set(ENTITIES)
        sends = {cid: home_assistant_sends(c) for cid, c in commands.items()}
        for cid, component in commands.items():
            assert component["command_topic"] == TOPICS.device_set(topic_id(description.name), cid)
            assert component["platform"] == ENTITIES[cid].platform
            for payload in sends[cid]:
                request = parse_entity([cid], payload.encode(), PROGRAMS)
                assert isinstance(request, SetRequest)
                assert not request.empty
            if cid in STOPS:
                # Any payload stops: stopping is always safe (test_any_payload_stops).
                for anything in (b"", b"null", b"press", b"ON", b"\xff"):
                    assert parse_entity([cid], anything, PROGRAMS).action == cid
                continue
            for payloads in sends.values():
                for payload in payloads:
                    if payload in sends[cid]:
                        continue
                    with pytest.raises(BadPayload):
                        parse_entity([cid], payload.encode(), PROGRAMS)
            for nothing in (b"", b" ", b"\n", b"null", b'""', b"{}", b"[]"):
                with pytest.raises(BadPayload, match="it takes"):
                    parse_entity([cid], nothing, PROGRAMS)
    # The bridge's own buttons send a request without fields.
    bridge = bridge_discovery(TOPICS, "1")[1]["components"]
    for cid in ("stop", "emergency_stop"):
        assert request_fields(bridge[cid]["payload_press"].encode()) == {}


def test_every_set_topic_is_documented() -> None:
    """docs/mqtt.md names what each command topic takes, as the table defines it."""
    from pathlib import Path

    docs = (Path(__file__).parents[3] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    for entity, handler in ENTITIES.items():
        row = next((line for line in docs.splitlines() if line.startswith(f"| `set/{entity}`")), "")
        assert row, f"docs/mqtt.md has no row for set/{entity}"
        for word in handler.discovery(PROGRAMS).values():
            if isinstance(word, str):
                assert f"`{word}`" in row, (entity, word, row)
