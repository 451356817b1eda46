"""The [mqtt] section of the configuration: broker, credentials, topics and timings.

The password is a SecretStr: it is never printed, logged or published (the
bridge's ``bridge/info`` carries :meth:`MqttSettings.summary`, which leaves it
and every other secret out).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

logger = logging.getLogger(__name__)

DEFAULT_NODE_ID = "massaged"
CLIENT_ID_PREFIX = "massaged-"

_NODE_ID = r"^[A-Za-z0-9_-]{1,64}$"
# Home Assistant allows only these characters in a discovery object id, and the node id
# is part of every object id and unique id we announce. Kept as text: re compiles (and
# caches) it when a node id is first checked, not at every import.


def check_topic_root(value: str, what: str) -> str:
    """A topic prefix we publish under: no wildcards, no empty level, no leading or trailing /."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if any(c in value for c in "+#\0"):
        raise ValueError(f"{what} must not contain '+', '#' or NUL: {value!r}")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"{what} must not start or end with '/' or have an empty level: {value!r}")
    if len(value.encode()) > 200:
        raise ValueError(f"{what} is longer than 200 bytes")
    return value


class MqttSettings(BaseModel):
    """[mqtt]: the MQTT bridge to a broker, with Home Assistant discovery."""

    # Same conventions as the other sections of controller.config.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(
        default=False,
        description="Connect to the broker and offer the daemon's API over MQTT.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        description="The broker's host name or address.",
    )
    port: int = Field(
        default=1883,
        ge=1,
        le=65535,
        description="The broker's port (1883 plain, usually 8883 with TLS).",
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="User name at the broker; unset: connect anonymously.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password at the broker (never printed or published).",
    )
    tls: bool = Field(
        default=False,
        description="Connect over TLS, checking the broker's certificate.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) to check the broker against (PEM); unset: the system's CAs.",
    )
    cert_file: Path | None = Field(
        default=None,
        description=(
            "Client certificate (PEM) for brokers that authenticate clients by certificate."
        ),
    )
    key_file: Path | None = Field(
        default=None,
        description="The client certificate's private key (PEM, without a passphrase).",
    )
    client_id: str = Field(
        default="",
        max_length=128,
        description='The MQTT client id; empty: "massaged-<node_id>".',
    )
    base_topic: str = Field(
        default="massaged",
        description="Every topic of the bridge starts with this.",
    )
    node_id: str = Field(
        default=DEFAULT_NODE_ID,
        description=(
            "Tells several daemons apart in Home Assistant (letters, digits, _ and - only)."
        ),
    )
    discovery_prefix: str = Field(
        default="homeassistant",
        description="Home Assistant's discovery prefix (its MQTT integration's setting).",
    )
    discovery: bool = Field(
        default=True,
        description="Announce the devices to Home Assistant by MQTT discovery.",
    )
    state_min_interval: float = Field(
        default=0.5,
        ge=0.0,
        le=60.0,
        allow_inf_nan=False,
        description=(
            "Seconds between two state messages of one device at the most (the latest wins)."
        ),
    )
    grace_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        allow_inf_nan=False,
        description="A session started over MQTT stops after the broker has been gone this long.",
    )
    reconnect_min: float = Field(
        default=1.0,
        gt=0.0,
        le=3600.0,
        allow_inf_nan=False,
        description=(
            "First delay, in seconds, before reconnecting to the broker; it doubles each try."
        ),
    )
    reconnect_max: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        allow_inf_nan=False,
        description="Longest delay, in seconds, between reconnect attempts (it never gives up).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_client_id(cls, data: Any) -> Any:
        # The client id follows the node id unless one is given, so two daemons with
        # different node ids never kick each other off the broker.
        if isinstance(data, dict) and not data.get("client_id"):
            node = data.get("node_id", DEFAULT_NODE_ID)
            if isinstance(node, str):
                data = {**data, "client_id": f"{CLIENT_ID_PREFIX}{node}"}
        return data

    @field_validator("base_topic")
    @classmethod
    def _check_base_topic(cls, value: str) -> str:
        return check_topic_root(value, "base_topic")

    @field_validator("discovery_prefix")
    @classmethod
    def _check_discovery_prefix(cls, value: str) -> str:
        return check_topic_root(value, "discovery_prefix")

    @field_validator("node_id")
    @classmethod
    def _check_node_id(cls, value: str) -> str:
        if not re.match(_NODE_ID, value):
            raise ValueError(
                f"node_id may hold only letters, digits, '_' and '-' (1 to 64): {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        """Backoff order, TLS files only with TLS, a key with its certificate."""
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(
                f"reconnect_min ({self.reconnect_min:g} s) is longer than "
                f"reconnect_max ({self.reconnect_max:g} s); make reconnect_min the smaller"
            )
        files = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n) is not None]
        if files and not self.tls:
            raise ValueError(f"{', '.join(files)} set but tls is false; set tls = true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        if self.password is not None and self.username is None:
            raise ValueError("password set without a username")
        if self.base_topic == self.discovery_prefix:
            raise ValueError("base_topic must differ from discovery_prefix")
        return self

    @property
    def effective_client_id(self) -> str:
        """The client id used at the broker."""
        return self.client_id or f"{CLIENT_ID_PREFIX}{self.node_id}"

    def secrets(self) -> list[str]:
        """Every secret value, so log forwarding can mask them."""
        if self.password is None:
            return []
        value = self.password.get_secret_value()
        return [value] if value else []

    def summary(self) -> dict[str, Any]:
        """The settings worth showing others (bridge/info): nothing secret."""
        return {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "authenticated": self.username is not None,
            "client_certificate": self.cert_file is not None,
            "client_id": self.effective_client_id,
            "base_topic": self.base_topic,
            "node_id": self.node_id,
            "discovery": self.discovery,
            "discovery_prefix": self.discovery_prefix,
            "state_min_interval": self.state_min_interval,
            "grace_seconds": self.grace_seconds,
            "reconnect_min": self.reconnect_min,
            "reconnect_max": self.reconnect_max,
        }
