"""The MQTT bridge: the daemon's API, devices and state on a broker, with Home Assistant discovery.

``MqttBridge`` (bridge.py) is what the daemon uses; ``MqttSettings`` (settings.py) is
the ``[mqtt]`` section of the configuration. docs/mqtt.md describes every topic.
"""

from controller.mqtt.bridge import MqttBridge, snapshot_states
from controller.mqtt.client import BrokerError, MqttClient
from controller.mqtt.discovery import DeviceDescription
from controller.mqtt.settings import MqttSettings

__all__ = [
    "BrokerError",
    "DeviceDescription",
    "MqttBridge",
    "MqttClient",
    "MqttSettings",
    "snapshot_states",
]
