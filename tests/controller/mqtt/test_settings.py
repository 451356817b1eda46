"""The [mqtt] settings: defaults, checks, and no secret in what is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from controller.mqtt.client import MqttClient
from controller.mqtt.settings import MqttSettings


def test_defaults() -> None:
    settings = MqttSettings()
    assert settings.enabled is False
    assert (settings.host, settings.port) == ("127.0.0.1", 1883)
    assert settings.base_topic == "massaged"
    assert settings.node_id == "massaged"
    assert settings.client_id == "massaged-massaged"
    assert settings.discovery_prefix == "homeassistant"
    assert settings.discovery is True
    assert settings.state_min_interval == 0.5
    assert settings.grace_seconds == 10.0
    assert (settings.reconnect_min, settings.reconnect_max) == (1.0, 60.0)


def test_client_id_follows_node_id_unless_given() -> None:
    assert MqttSettings(node_id="bedroom").client_id == "massaged-bedroom"
    assert MqttSettings(node_id="bedroom", client_id="mine").client_id == "mine"
    strict = MqttSettings.model_validate_json(json.dumps({"node_id": "den"}), strict=True)
    assert strict.effective_client_id == "massaged-den"


@pytest.mark.parametrize(
    "values",
    [
        {"base_topic": "massaged/#"},
        {"base_topic": "/massaged"},
        {"base_topic": "a//b"},
        {"base_topic": ""},
        {"discovery_prefix": "home+assistant"},
        {"node_id": "has space"},
        {"node_id": "a/b"},
        {"port": 0},
        {"port": 70000},
        {"reconnect_min": 10.0, "reconnect_max": 5.0},
        {"ca_file": "/etc/ssl/ca.pem"},
        {"tls": True, "cert_file": "/c.pem"},
        {"password": "secret"},
        {"grace_seconds": 0},
        {"state_min_interval": -1},
        {"base_topic": "same", "discovery_prefix": "same"},
        {"hots": "typo"},
    ],
)
def test_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MqttSettings.model_validate(values)


def test_strict_json_refuses_a_string_port() -> None:
    with pytest.raises(ValidationError):
        MqttSettings.model_validate_json('{"port": "1883"}', strict=True)


def test_tls_files(tmp_path: Path) -> None:
    settings = MqttSettings(
        tls=True,
        ca_file=tmp_path / "ca.pem",
        cert_file=tmp_path / "c.pem",
        key_file=tmp_path / "k.pem",
    )
    assert settings.summary()["client_certificate"] is True


def test_password_is_never_shown() -> None:
    settings = MqttSettings(username="massaged", password=SecretStr("hunter2"))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert "hunter2" not in json.dumps(settings.summary())
    assert "massaged" not in json.dumps(settings.summary()["authenticated"])
    assert settings.secrets() == ["hunter2"]


async def test_the_client_backs_off_from_min_to_max_with_jitter() -> None:
    async def on_message(topic: str, payload: bytes, retained: bool) -> None:
        del topic, payload, retained

    settings = MqttSettings(reconnect_min=1.0, reconnect_max=60.0)
    top = MqttClient(settings, subscriptions=[], on_message=on_message, rng=lambda: 1.0)
    bottom = MqttClient(settings, subscriptions=[], on_message=on_message, rng=lambda: 0.0)
    # The client's own rule is controller.backoff's (tested there): half to all of each step.
    assert [next(top.backoff) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [next(bottom.backoff) for _ in range(3)] == [0.5, 1.0, 2.0]
