"""Home Assistant MQTT discovery payloads, built from device descriptions and capabilities.

Pure functions: no I/O, every result JSON-serialisable. One device-based
discovery message (``<prefix>/device/<object_id>/config``, with ``device``,
``origin`` and ``components``) per massage device, plus one for the bridge
itself, which every massage device names as its ``via_device``. Each entity
is available only while both the bridge (``<base>/bridge/state``) and its
device (``<base>/<device>/availability``) are online (``availability_mode: all``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from controller.mqtt.commands import (
    BUTTONS,
    ENTITIES,
    PAYLOAD_OFF,
    PAYLOAD_ON,
    REQUEST_PRESS,
    SCALE_MAX,
    SCALE_MIN,
    SCALE_STEP,
)
from controller.profile_terms import HEATER_LIMITS_S, SESSION_LIMITS_S
from controller.profiles import Audience
from devices.capabilities import Capabilities, DeviceKind
from devices.errors import ConfigError
from devices.kinds import kind_spec, model_spec

if TYPE_CHECKING:
    from controller.store import DeviceRecord

logger = logging.getLogger(__name__)

ORIGIN_NAME: Final = "massaged"
DEFAULT_PROGRAM: Final = "collar-zone"
SESSION_EVENT_TYPES: Final = ("finished", "stopped", "emergency_stop", "cut", "fault")
"""The event entity's event types: how a session ended."""
BRIDGE_ID: Final = "bridge"
"""The bridge's own topic level; never used for a device."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOT_SAFE = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    """A paired device as MQTT shows it: what it is and, once connected, what it can do."""

    name: str
    kind: DeviceKind
    model: str = ""
    firmware: str = ""
    serial: str = ""
    capabilities: Capabilities | None = None
    """None until the device has been connected once (no heater switch before that)."""
    max_intensity: float = 1.0
    """The device's own cap (set_caps), a fraction of the kind's maximum."""

    @classmethod
    def from_record(
        cls, record: DeviceRecord, capabilities: Capabilities | None = None
    ) -> DeviceDescription:
        """A registry entry (and the capabilities its driver reported, once known)."""
        return cls(
            name=record.name,
            kind=DeviceKind(record.kind),
            model=record.model,
            firmware=record.firmware,
            serial=record.serial,
            capabilities=capabilities,
            max_intensity=float(record.caps.get(DeviceKind(record.kind).value, 1.0)),
        )

    @property
    def heater(self) -> bool:
        """Whether a heater is known to be fitted."""
        return self.capabilities is not None and self.capabilities.heater

    def to_json(self) -> dict[str, Any]:
        """The description as JSON (bridge/devices)."""
        caps = self.capabilities
        return {
            "name": self.name,
            "topic": topic_id(self.name),
            "kind": self.kind.value,
            "model": self.model
            or (caps.model if caps else "")
            or kind_spec(self.kind).default_model,
            "firmware": self.firmware or (caps.firmware if caps else ""),
            "serial": self.serial or (caps.serial if caps else ""),
            "heater": self.heater,
            "max_intensity": self.max_intensity,
            "capabilities": caps.model_dump(mode="json") if caps is not None else None,
        }


def table_model(kind: DeviceKind, model: str) -> str:
    """The model as the models table names it ("VB1-6" is a VB1; "" the kind's default).

    A model the table does not know (a record from a newer massaged) is shown as stored.
    """
    try:
        return model_spec(model, kind).model
    except ConfigError:
        return model or kind_spec(kind).default_model


def topic_id(name: str) -> str:
    """The device's topic level and discovery id: the name when it is safe, else a stable slug.

    MQTT forbids + and # in topics and / makes levels; Home Assistant allows only
    [A-Za-z0-9_-] in ids. A slug gets a short hash so two names never share one.
    """
    if _SAFE_ID.match(name) and name != BRIDGE_ID:
        return name
    slug = _NOT_SAFE.sub("_", name.lower()).strip("_")[:40] or "device"
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6]
    return f"{slug}_{digest}"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one bridge, from the base topic, node id and discovery prefix."""

    base: str
    node_id: str
    discovery_prefix: str

    @property
    def bridge_state(self) -> str:
        """Retained {"state": "online"|"offline"}, the last will."""
        return f"{self.base}/bridge/state"

    @property
    def bridge_info(self) -> str:
        """Retained version, node id and settings summary."""
        return f"{self.base}/bridge/info"

    @property
    def bridge_devices(self) -> str:
        """Retained list of the paired devices."""
        return f"{self.base}/bridge/devices"

    @property
    def bridge_event(self) -> str:
        """Pairing and session events."""
        return f"{self.base}/bridge/event"

    @property
    def bridge_logging(self) -> str:
        """Warnings and errors of the daemon."""
        return f"{self.base}/bridge/logging"

    @property
    def request_filter(self) -> str:
        """Subscription for every request."""
        return f"{self.base}/bridge/request/#"

    @property
    def request_prefix(self) -> str:
        """A request topic is this plus the command."""
        return f"{self.base}/bridge/request/"

    def request(self, command: str) -> str:
        """Where a command is asked."""
        return f"{self.base}/bridge/request/{command}"

    def response(self, command: str) -> str:
        """Where a command is answered."""
        return f"{self.base}/bridge/response/{command}"

    @property
    def set_response(self) -> str:
        """Where every message on a device's set topics is answered."""
        return f"{self.base}/bridge/response/set"

    @property
    def set_filter(self) -> str:
        """Subscription for <base>/<device>/set and every <base>/<device>/set/<entity>."""
        return f"{self.base}/+/set/#"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and last will topic."""
        return f"{self.discovery_prefix}/status"

    def device_state(self, tid: str) -> str:
        """Retained JSON state of one device."""
        return f"{self.base}/{tid}"

    def device_availability(self, tid: str) -> str:
        """Retained online/offline of one device's link."""
        return f"{self.base}/{tid}/availability"

    def device_info(self, tid: str) -> str:
        """Retained description and real limits of one device."""
        return f"{self.base}/{tid}/info"

    def device_event(self, tid: str) -> str:
        """Session events of one device (Home Assistant event entity)."""
        return f"{self.base}/{tid}/event"

    def device_set(self, tid: str, entity: str | None = None) -> str:
        """The device's JSON command topic, or one entity's command topic."""
        return f"{self.base}/{tid}/set" if entity is None else f"{self.base}/{tid}/set/{entity}"

    def object_id(self, tid: str) -> str:
        """A device's id in Home Assistant: node id and topic id."""
        return f"{self.node_id}_{tid}"

    def discovery(self, object_id: str) -> str:
        """The device-based discovery topic."""
        return f"{self.discovery_prefix}/device/{object_id}/config"


def origin(version: str, support_url: str | None = None) -> dict[str, Any]:
    """The origin block: who publishes this discovery."""
    block: dict[str, Any] = {"name": ORIGIN_NAME, "sw_version": version}
    if support_url:
        block["support_url"] = support_url
    return block


def bridge_availability(topics: Topics) -> dict[str, Any]:
    """Availability entry for the bridge's JSON state topic."""
    return {
        "topic": topics.bridge_state,
        "value_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def bridge_device_name(node_id: str) -> str:
    """The bridge's name in Home Assistant."""
    return "massaged" if node_id == "massaged" else f"massaged {node_id}"


def bridge_discovery(
    topics: Topics, version: str, support_url: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The bridge's discovery topic and payload: the via_device of every massage device."""
    object_id = topics.object_id(BRIDGE_ID)
    uid = object_id
    payload: dict[str, Any] = {
        "device": {
            "identifiers": [object_id],
            "name": bridge_device_name(topics.node_id),
            "model": "massaged bridge",
            "sw_version": version,
        },
        "origin": origin(version, support_url),
        "availability": [bridge_availability(topics)],
        "availability_mode": "all",
        "qos": 1,
        "components": {
            "emergency_stop": {
                "platform": "button",
                "name": "Emergency stop all",
                "unique_id": f"{uid}_emergency_stop",
                "command_topic": topics.request("emergency_stop"),
                "payload_press": REQUEST_PRESS,
                "icon": "mdi:alert-octagon",
            },
            "stop": {
                "platform": "button",
                "name": "Stop all",
                "unique_id": f"{uid}_stop",
                "command_topic": topics.request("stop"),
                "payload_press": REQUEST_PRESS,
                "icon": "mdi:stop",
            },
            "version": {
                "platform": "sensor",
                "name": "Version",
                "unique_id": f"{uid}_version",
                "state_topic": topics.bridge_info,
                "value_template": "{{ value_json.version }}",
                "entity_category": "diagnostic",
                "icon": "mdi:information-outline",
            },
        },
    }
    return topics.discovery(object_id), payload


def device_limits(description: DeviceDescription) -> dict[str, Any]:
    """The device's real limits: protocol maxima, its cap, outputs and the method's time limits."""
    caps = description.capabilities
    maximum = kind_spec(description.kind).maximum
    limits: dict[str, Any] = {
        "kind": description.kind.value,
        "scale_min": SCALE_MIN,
        "scale_max": SCALE_MAX,
        "scale_step": SCALE_STEP,
        "max_intensity": description.max_intensity,
        "protocol_maximum": maximum,
        "effective_maximum": int(maximum * description.max_intensity),
        "session_limit_s": {a.value: SESSION_LIMITS_S[a] for a in Audience},
        "heater": description.heater,
    }
    if description.heater:
        limits["heater_limit_s"] = {a.value: HEATER_LIMITS_S[a] for a in Audience}
    if caps is not None:
        if caps.motors:
            limits["motors"] = [
                {"index": m.index, "place": m.place.value, "side": m.side.value, "max": m.max_level}
                for m in caps.motors
            ]
        if caps.kneading is not None:
            limits["kneading"] = {
                "nodes": caps.kneading.nodes,
                "max_speed": caps.kneading.max_speed,
                "directions": [d.value for d in caps.kneading.directions],
            }
        if caps.ems_channels:
            limits["ems_channels"] = [
                {
                    "name": c.name,
                    "side": c.side.value,
                    "max_strength": c.max_strength,
                    "max_raise_per_100ms": c.max_raise_per_100ms,
                }
                for c in caps.ems_channels
            ]
    return limits


def device_info(description: DeviceDescription) -> dict[str, Any]:
    """The retained <base>/<device>/info payload: the description and its limits."""
    return {**description.to_json(), "limits": device_limits(description)}


def device_discovery(
    topics: Topics,
    description: DeviceDescription,
    programs: Sequence[str],
    version: str,
    support_url: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """One massage device's discovery topic and payload, every entity in one message."""
    tid = topic_id(description.name)
    object_id = topics.object_id(tid)
    state = topics.device_state(tid)
    options = list(dict.fromkeys(programs)) or [DEFAULT_PROGRAM]
    info = description.to_json()

    def uid(entity: str) -> str:
        return f"{object_id}_{entity}"

    def command(entity: str) -> dict[str, Any]:
        # The platform, topic and payloads come from the table the bridge accepts by.
        handler = ENTITIES[entity]
        return {
            "platform": handler.platform,
            "unique_id": uid(entity),
            "command_topic": topics.device_set(tid, entity),
            **handler.discovery(options),
        }

    components: dict[str, dict[str, Any]] = {
        "program": {
            **command("program"),
            "name": "Program",
            "state_topic": state,
            "value_template": "{{ value_json.selected_program }}",
            "icon": "mdi:playlist-play",
        },
        "scale": {
            **command("scale"),
            "name": "Intensity scale",
            "state_topic": state,
            "value_template": "{{ value_json.selected_scale }}",
            "mode": "slider",
            "icon": "mdi:tune-vertical",
            # The real limits (protocol maximum, the device's cap, time limits) as attributes.
            "json_attributes_topic": topics.device_info(tid),
            "json_attributes_template": "{{ value_json.limits | tojson }}",
        },
    }
    icons = {
        "start": "mdi:play",
        "pause": "mdi:pause",
        "stop": "mdi:stop",
        "emergency_stop": "mdi:alert-octagon",
        "gentler": "mdi:arrow-down-bold",
    }
    titles = {
        "start": "Start",
        "pause": "Pause",
        "stop": "Stop",
        "emergency_stop": "Emergency stop",
        "gentler": "Gentler",
    }
    for button in BUTTONS:
        components[button] = {**command(button), "name": titles[button], "icon": icons[button]}
    components.update(
        {
            "running": {
                "platform": "binary_sensor",
                "name": "Running",
                "unique_id": uid("running"),
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.running else 'OFF' }}",
                "device_class": "running",
                "json_attributes_topic": state,
            },
            "step": {
                "platform": "sensor",
                "name": "Step",
                "unique_id": uid("step"),
                "state_topic": state,
                "value_template": "{{ value_json.step if value_json.step else 'idle' }}",
                "icon": "mdi:format-list-numbered",
            },
            "time_left": {
                "platform": "sensor",
                "name": "Time left",
                "unique_id": uid("time_left"),
                "state_topic": state,
                # "None" is Home Assistant's "unknown" for a sensor.
                "value_template": (
                    "{{ value_json.time_left if value_json.time_left is not none else 'None' }}"
                ),
                "device_class": "duration",
                "unit_of_measurement": "s",
                "state_class": "measurement",
            },
            "battery": {
                "platform": "sensor",
                "name": "Battery",
                "unique_id": uid("battery"),
                "state_topic": state,
                "value_template": (
                    "{{ value_json.battery if value_json.battery is not none else 'None' }}"
                ),
                "device_class": "battery",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            },
            "session": {
                "platform": "event",
                "name": "Session",
                "unique_id": uid("session"),
                "state_topic": topics.device_event(tid),
                "event_types": list(SESSION_EVENT_TYPES),
                "icon": "mdi:timer-check-outline",
            },
        }
    )
    components["well_today"] = {
        **command("well_today"),
        "name": "Well today",
        "state_topic": state,
        "value_template": f"{{{{ '{PAYLOAD_ON}' if value_json.well_today else '{PAYLOAD_OFF}' }}}}",
        "icon": "mdi:account-check",
    }
    if description.heater:
        components["heater"] = {
            **command("heater"),
            "name": "Heater",
            "state_topic": state,
            # The state in the switch's own payloads, so HA shows what it would send.
            "value_template": f"{{{{ '{PAYLOAD_ON}' if value_json.heater else '{PAYLOAD_OFF}' }}}}",
            "icon": "mdi:heat-wave",
        }
    model = table_model(description.kind, info["model"])
    device: dict[str, Any] = {
        "identifiers": [object_id],
        "name": description.name,
        "model": f"{model} {kind_spec(description.kind).label}",
        "via_device": topics.object_id(BRIDGE_ID),
    }
    if info["model"] != model:
        device["model_id"] = info["model"]  # what the device reports ("VB1-6")
    if info["firmware"]:
        device["sw_version"] = info["firmware"]
    if info["serial"]:
        device["serial_number"] = info["serial"]
    payload: dict[str, Any] = {
        "device": device,
        "origin": origin(version, support_url),
        "availability": [
            bridge_availability(topics),
            {
                "topic": topics.device_availability(tid),
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ],
        "availability_mode": "all",
        "qos": 1,
        "components": components,
    }
    return topics.discovery(object_id), payload
