"""The MQTT bridge: the daemon's API, devices and state on a broker, with Home Assistant discovery.

``MqttBridge`` (bridge.py) is what the daemon uses; ``MqttSettings`` (settings.py) is
the ``[mqtt]`` section of the configuration. docs/mqtt.md describes every topic.
"""

# Nothing is imported here on purpose: the command line loads the configuration (and
# so controller.mqtt.settings) on every call, and must not pay for aiomqtt and paho.
