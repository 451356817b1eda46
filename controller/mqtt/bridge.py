"""The MQTT bridge: the daemon's API, state and events on a broker, for Home Assistant and others.

Topics (``<base>`` is ``[mqtt] base_topic``, docs/mqtt.md has every payload):

- ``<base>/bridge/state``: retained ``{"state": "online"|"offline"}``, the last will.
- ``<base>/bridge/info``: retained version, node id and a settings summary (no secrets).
- ``<base>/bridge/devices``: retained list of the paired devices.
- ``<base>/bridge/event``: pairing and session events.
- ``<base>/bridge/logging``: the daemon's warnings and errors.
- ``<base>/bridge/request/<command>`` -> ``<base>/bridge/response/<command>``: the API.
- ``<base>/<device>``: retained JSON state, at most one message per state_min_interval.
- ``<base>/<device>/availability``: retained online/offline, following the device's link.
- ``<base>/<device>/info``: retained description and real limits.
- ``<base>/<device>/event``: how sessions ended (Home Assistant event entity).
- ``<base>/<device>/set`` and ``<base>/<device>/set/<entity>``: the entities' commands,
  each answered on ``<base>/bridge/response/set``.

Everything received goes through :func:`controller.api.dispatch`, so MQTT can do
exactly what the command line can and nothing else. Each command topic takes
exactly the payloads controller/mqtt/commands.py defines (and discovery
announces); anything else, an empty payload above all (it is also how a
retained message is deleted), is answered with an error naming what the topic
takes, logged as a warning, and changes nothing. A retained command is never
carried out.

MQTT is not a safety channel. The grace rule: when the broker goes away while a
session that was started over MQTT runs, the session is stopped (with its soft
fade) unless the broker is back within ``grace_seconds``. Sessions started in
another way are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import math
import time
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, Final

from controller.api import COMMANDS, DaemonAPI, dispatch, error, ok
from controller.errors import BadPayload, BrokerError
from controller.log_limit import limit_repeats
from controller.mqtt.client import MqttClient, Payload, cancel_and_wait, encode
from controller.mqtt.commands import SCALE_MAX, SetRequest, parse_entity, request_fields
from controller.mqtt.discovery import (
    DEFAULT_PROGRAM,
    SESSION_EVENT_TYPES,
    DeviceDescription,
    Topics,
    bridge_discovery,
    device_discovery,
    device_info,
    topic_id,
)
from controller.mqtt.settings import MqttSettings
from controller.session import DeviceState, SessionSnapshot, SessionState

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 360.0
"""Longest an API call may take: above the longest pairing window (300 s)."""
MAX_PENDING_REQUESTS: Final = 32
"""Requests in progress at once; stop and emergency_stop are always let through."""
OUTBOX_SIZE: Final = 1000
"""Messages waiting to be sent; more are dropped (the retained state is sent again anyway)."""
FREQUENT_QOS: Final = 0
"""QoS of the frequent messages: device states, responses, events and log lines.

At QoS 1 the broker answers each with a PUBACK. The kernel delays its ACK of
that small PUBACK by up to 40 ms, and mosquitto (set_tcp_nodelay false by
default) holds the next message for us, a command, until that ACK comes:
commands after a state change waited up to 40 ms (bench/mqtt_latency.py). These
messages are sent again on every change and all of them on every reconnect,
so QoS 0 loses nothing that matters; availability, discovery and the will stay
at QoS 1.
"""
ALWAYS_ACCEPTED: Final = frozenset({"stop", "emergency_stop"})
END_EVENTS: Final = frozenset(SESSION_EVENT_TYPES)

STATE_DEFAULTS: Final[Mapping[str, Any]] = {
    "link": "unknown",
    "running": False,
    "paused": False,
    "program": None,
    "step": None,
    "time_left": None,
    "outputs": {},
    "battery": None,
    "heater": False,
    "last_error": None,
}
"""Every key of a device's state message, before the daemon says otherwise."""
BRIDGE_OWNED: Final = frozenset({"name", "selected_program", "selected_scale", "well_today"})


def _package_version() -> str:
    try:
        return importlib.metadata.version("massaged")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _support_url() -> str | None:
    """The project's URL from its package metadata, if it names one."""
    try:
        meta = importlib.metadata.metadata("massaged")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in meta.get_all("Project-URL") or []:
        url = str(entry).partition(",")[2].strip()
        if url.startswith(("http://", "https://")):
            return url
    for home in meta.get_all("Home-page") or []:
        if str(home).startswith(("http://", "https://")):
            return str(home)
    return None


def _program_ids() -> list[str]:
    """The ids of every program in the library (built-in and the user's), in its order.

    The built-ins by their file names, as the library finds them, without loading each one
    (a full plan check apiece, seconds in all on a small machine); the user's own files are
    loaded, so a file that does not load is left out as the library leaves it out.
    """
    from programs import library
    from programs.errors import ProgramError

    try:
        builtins = library.builtin_ids()
        ids = list(builtins)
        folder = library.user_dir()
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if path.stem in builtins:
                continue  # a built-in's id: the library reports it, and lists the built-in
            try:
                library.get(path.stem)  # loaded and checked (its id is its file name)
            except ProgramError:
                continue
            ids.append(path.stem)
    except Exception as err:  # the select then offers the default program only
        logger.warning("MQTT: could not list the programs: %s", err)
        return [DEFAULT_PROGRAM]
    return ids


def snapshot_states(snapshot: SessionSnapshot) -> dict[str, dict[str, Any]]:
    """Each device's state message from a session snapshot, for MqttBridge.device_state."""
    live = snapshot.state in (SessionState.RUNNING, SessionState.PAUSED, SessionState.STOPPING)
    states: dict[str, dict[str, Any]] = {}
    for name, dev in snapshot.devices.items():
        running = live and dev.state not in (
            DeviceState.ENDED,
            DeviceState.DROPPED,
            DeviceState.STOPPED,
        )
        states[name] = {
            "link": dev.link,
            "running": running,
            "paused": running
            and (snapshot.state == SessionState.PAUSED or dev.state == DeviceState.PAUSED),
            "program": snapshot.program_id if running else None,
            "step": (snapshot.step_label or None) if running else None,
            "time_left": round(snapshot.remaining) if running else None,
            "outputs": dict(dev.output),
            "heater": bool(dev.output.get("heater", 0)),
        }
    return states


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: Payload
    retain: bool
    keep: bool
    """Wait for the broker instead of dropping this while disconnected (log records)."""


class BridgeLogHandler(logging.Handler):
    """Forwards WARNING and worse to <base>/bridge/logging, secrets masked."""

    def __init__(self, bridge: MqttBridge, secrets: Sequence[str]) -> None:
        super().__init__(level=logging.WARNING)
        self._bridge = bridge
        self._secrets = [s for s in secrets if s]
        self._loop = asyncio.get_running_loop()

    def mask(self, text: str) -> str:
        """The text with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for publishing (from any thread)."""
        # The MQTT client's own connection trouble cannot be published over that connection.
        if record.name.startswith("controller.mqtt.client"):
            return
        try:
            entry: dict[str, Any] = {
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": self.mask(record.getMessage()),
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            }
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                entry["exception"] = self.mask(f"{type(exc).__name__}: {exc}")
            self._loop.call_soon_threadsafe(self._bridge._log_entry, entry)
        except RuntimeError:
            pass  # the loop is closed: the daemon is ending
        except Exception:
            self.handleError(record)


class MqttBridge:
    """Offers the daemon's API, its devices and their state on an MQTT broker."""

    def __init__(
        self,
        settings: MqttSettings,
        api: DaemonAPI,
        *,
        programs: Sequence[str] | None = None,
        default_program: str = DEFAULT_PROGRAM,
        version: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
        log_forwarding: bool = True,
    ) -> None:
        self.settings = settings
        self._api = api
        self.topics = Topics(settings.base_topic, settings.node_id, settings.discovery_prefix)
        self._programs = list(dict.fromkeys(programs if programs is not None else _program_ids()))
        if default_program not in self._programs:
            self._programs.insert(0, default_program)
        self._default_program = default_program
        self._version = version or _package_version()
        self._support_url = _support_url()
        self._request_timeout = request_timeout
        self._log_forwarding = log_forwarding
        self.client = MqttClient(
            settings,
            subscriptions=[
                self.topics.request_filter,
                self.topics.set_filter,
                self.topics.ha_status,
            ],
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
        )
        self._devices: dict[str, DeviceDescription] = {}
        self._by_tid: dict[str, str] = {}
        self._removed: set[str] = set()
        self._states: dict[str, dict[str, Any]] = {}
        self._available: dict[str, bool] = {}
        self._selected_program: dict[str, str] = {}
        self._selected_scale: dict[str, float] = {}
        self._well_on: date | None = None
        """The day the person last said (switch "Well today") they are well: a start from a
        button carries well_today only on that day. One person, so one for every device."""
        self._published: dict[str, dict[str, Any]] = {}
        self._last_sent: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._state_wake = asyncio.Event()
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(OUTBOX_SIZE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._grace_task: asyncio.Task[None] | None = None
        self._mqtt_session = False
        self._log_handler: BridgeLogHandler | None = None
        self._started = False

    # -- life cycle -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self.client.connected

    @property
    def mqtt_session(self) -> bool:
        """True while a session started over MQTT runs (the grace rule applies to it)."""
        return self._mqtt_session

    def selection(self, name: str) -> tuple[str, float]:
        """The program and scale a device's next start would use."""
        return (
            self._selected_program.get(name, self._default_program),
            self._selected_scale.get(name, SCALE_MAX),
        )

    @property
    def programs(self) -> list[str]:
        """The program ids offered by the program select."""
        return list(self._programs)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once connected and everything retained is published; BrokerError on time-out."""
        await self.client.wait_ready(timeout)

    async def start(self) -> None:
        """Connect in the background and start publishing (nothing when [mqtt] is disabled)."""
        if not self.settings.enabled:
            logger.info("MQTT: disabled in the configuration")
            return
        if self._started:
            return
        self._started = True
        if self._log_forwarding:
            self._log_handler = BridgeLogHandler(self, self.settings.secrets())
            limit_repeats(self._log_handler)  # a flood of warnings is not a flood of messages
            logging.getLogger().addHandler(self._log_handler)
        self._workers = [
            asyncio.create_task(self._sender(), name="mqtt-sender"),
            asyncio.create_task(self._state_pump(), name="mqtt-state"),
        ]
        self.client.start()

    async def close(self) -> None:
        """Say offline, disconnect, and end every task of the bridge."""
        if not self._started:
            return
        self._started = False
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        await cancel_and_wait([*self._tasks, *self._workers])
        self._tasks.clear()
        self._workers = []
        self._grace_task = None
        await self.client.close()

    async def __aenter__(self) -> MqttBridge:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- push interface (the daemon calls these, on the event loop) -------------

    def set_devices(self, descriptions: Iterable[DeviceDescription]) -> None:
        """The paired devices now: (re)announce them, forget the ones that went."""
        devices: dict[str, DeviceDescription] = {}
        by_tid: dict[str, str] = {}
        for description in descriptions:
            tid = topic_id(description.name)
            if tid in by_tid and by_tid[tid] != description.name:
                logger.warning(
                    "MQTT: devices %r and %r share the topic %r; %r is left out",
                    by_tid[tid],
                    description.name,
                    tid,
                    description.name,
                )
                continue
            devices[description.name] = description
            by_tid[tid] = description.name
        for tid in set(self._by_tid) - set(by_tid):
            self._removed.add(tid)
            name = self._by_tid[tid]
            self._published.pop(name, None)
            self._dirty.discard(name)
        self._removed -= set(by_tid)
        self._devices = devices
        self._by_tid = by_tid
        for name in devices:
            self._states.setdefault(name, {})
            self._selected_program.setdefault(name, self._default_program)
            self._selected_scale.setdefault(name, SCALE_MAX)
        if self.connected:
            for message in self._retained_messages():
                self._enqueue(*message, retain=True)
            self._removed.clear()
        for name in devices:
            self._mark_dirty(name)

    def set_programs(self, programs: Sequence[str]) -> None:
        """The program ids the program select offers (after the library changed)."""
        ids = list(dict.fromkeys(programs))
        if self._default_program not in ids:
            ids.insert(0, self._default_program)
        if ids == self._programs:
            return
        self._programs = ids
        if self.connected:
            for message in self._retained_messages():
                self._enqueue(*message, retain=True)

    def device_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Part or all of a device's state changed; published soon, rate-limited."""
        try:
            update = {str(k): v for k, v in state.items() if k not in BRIDGE_OWNED}
            json.dumps(update, allow_nan=False)
        except (TypeError, ValueError, AttributeError) as err:
            logger.warning("MQTT: state of %s is not JSON (%s); not published", name, err)
            return
        merged = {**self._states.get(name, {}), **update}
        outputs = update.get("outputs")
        if isinstance(outputs, Mapping) and "heater" not in update:
            merged["heater"] = bool(outputs.get("heater", 0))
        self._states[name] = merged
        self._mark_dirty(name)

    def device_available(self, name: str, online: bool) -> None:
        """The device's link came up (True) or went down (False)."""
        if self._available.get(name) == online:
            return
        self._available[name] = online
        if name in self._devices:
            tid = topic_id(name)
            payload = "online" if online else "offline"
            self._enqueue(self.topics.device_availability(tid), payload, retain=True)

    def publish_event(self, kind: str, data: Mapping[str, Any] | None = None) -> None:
        """A daemon event (pairing and the like) on <base>/bridge/event."""
        self._enqueue(self.topics.bridge_event, {"type": kind, "data": dict(data or {})})

    def session_event(
        self, device: str | None, event_type: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """A session event, for one device or (None) the whole session."""
        detail = dict(data or {})
        self._enqueue(
            self.topics.bridge_event,
            {"type": "session", "data": {**detail, "event": event_type, "device": device}},
        )
        if event_type in END_EVENTS:
            if device is not None:
                targets = [device]
            elif isinstance(detail.get("devices"), list):
                targets = [str(d) for d in detail["devices"]]
            else:
                targets = list(self._devices)
            for name in targets:
                if name in self._devices:
                    self._enqueue(
                        self.topics.device_event(topic_id(name)),
                        {**detail, "event_type": event_type},
                    )
            if device is None:
                # The session is over however it ended: the grace rule no longer applies.
                self._mqtt_session = False
                self._cancel_grace()

    # -- publishing ---------------------------------------------------------------

    def _enqueue(
        self, topic: str, payload: Payload, *, retain: bool = False, keep: bool = False
    ) -> None:
        if not keep and not self.connected:
            return  # retained things are sent again on reconnect; events are of the moment
        try:
            # Encoded now, so data that is not JSON is refused here, not in the sender.
            data = encode(payload)
        except (TypeError, ValueError) as err:
            logger.warning("MQTT: a message to %s is not JSON (%s); not sent", topic, err)
            return
        try:
            self._outbox.put_nowait(_Outgoing(topic, data, retain, keep))
        except asyncio.QueueFull:
            logger.debug("MQTT: outbox full, dropped a message to %s", topic)

    def _log_entry(self, entry: dict[str, Any]) -> None:
        """Called on the loop by the log handler."""
        if self._started:
            self._enqueue(self.topics.bridge_logging, entry, keep=True)

    async def _sender(self) -> None:
        """Send queued messages in order; a failure is only logged at DEBUG (no log loops)."""
        while self._started:
            item = await self._outbox.get()
            if not self.connected:
                if not item.keep:
                    continue
                await self.client.wait_connected()
            try:
                # Retained here means discovery or availability: those stay at QoS 1.
                qos = 1 if item.retain else FREQUENT_QOS
                await self.client.publish(item.topic, item.payload, retain=item.retain, qos=qos)
            except BrokerError as err:
                logger.debug("MQTT: %s", err)
            except Exception as err:  # the sender must outlive any one message
                logger.debug("MQTT: sending to %s failed: %r", item.topic, err)

    def _full_state(self, name: str) -> dict[str, Any]:
        return {
            **STATE_DEFAULTS,
            **self._states.get(name, {}),
            "name": name,
            "selected_program": self._selected_program.get(name, self._default_program),
            "selected_scale": self._selected_scale.get(name, SCALE_MAX),
            "well_today": self._well_today(),
        }

    def _well_today(self) -> bool:
        return self._well_on == date.today()

    def _mark_dirty(self, name: str) -> None:
        if name in self._devices and self._full_state(name) != self._published.get(name):
            self._dirty.add(name)
            self._state_wake.set()

    async def _state_pump(self) -> None:
        """Publish changed states, each device at most once per state_min_interval."""
        interval = self.settings.state_min_interval
        while self._started:
            if not self._dirty:
                await self._state_wake.wait()
                self._state_wake.clear()
                continue
            if not self.connected:
                # on_connected publishes every state anew.
                await self.client.wait_connected()
                continue
            now = time.monotonic()
            next_due = math.inf
            for name in list(self._dirty):
                due = self._last_sent.get(name, -math.inf) + interval
                if due > now:
                    next_due = min(next_due, due)
                    continue
                self._dirty.discard(name)
                await self._publish_state(name)
            if next_due < math.inf:
                self._state_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_due - time.monotonic())):
                        await self._state_wake.wait()

    async def _publish_state(self, name: str) -> None:
        if name not in self._devices:
            return
        state = self._full_state(name)
        if state == self._published.get(name):
            return
        self._last_sent[name] = time.monotonic()
        try:
            await self.client.publish(
                self.topics.device_state(topic_id(name)), state, retain=True, qos=FREQUENT_QOS
            )
        except BrokerError as err:
            logger.debug("MQTT: %s", err)
            return
        self._published[name] = state

    def _retained_messages(self) -> Iterator[tuple[str, Payload]]:
        """Everything retained: info, devices, discovery, availability, device info and state."""
        t = self.topics
        for tid in sorted(self._removed):
            # An empty retained message deletes the retained one (and the HA device).
            yield t.discovery(t.object_id(tid)), None
            yield t.device_info(tid), None
            yield t.device_availability(tid), None
            yield t.device_state(tid), None
        yield (
            t.bridge_info,
            {
                "version": self._version,
                "node_id": self.settings.node_id,
                "commands": list(COMMANDS),
                "programs": self._programs,
                "config": self.settings.summary(),
            },
        )
        yield t.bridge_devices, [d.to_json() for d in self._devices.values()]
        if self.settings.discovery:
            yield bridge_discovery(t, self._version, self._support_url)
            for description in self._devices.values():
                yield device_discovery(
                    t, description, self._programs, self._version, self._support_url
                )
        for name, description in self._devices.items():
            tid = topic_id(name)
            yield t.device_info(tid), device_info(description)
            yield t.device_availability(tid), "online" if self._available.get(name) else "offline"

    async def _publish_all(self) -> None:
        """Publish everything retained again, then every device's state."""
        for topic, payload in self._retained_messages():
            await self.client.publish(topic, payload, retain=True)
        self._removed.clear()
        for name in list(self._devices):
            self._published.pop(name, None)
            self._dirty.discard(name)
            await self._publish_state(name)

    # -- the connection's hooks -------------------------------------------------------

    async def _on_connected(self) -> None:
        self._cancel_grace("broker back within the grace time; the session goes on")
        await self._publish_all()

    def _on_disconnected(self) -> None:
        if self._mqtt_session:
            self._start_grace()

    def _start_grace(self) -> None:
        if self._grace_task is not None and not self._grace_task.done():
            return
        logger.warning(
            "MQTT: broker lost while a session started over MQTT runs; "
            "it stops in %g s unless the broker is back",
            self.settings.grace_seconds,
        )
        self._grace_task = self._spawn(self._grace(), "mqtt-grace")

    def _cancel_grace(self, why: str | None = None) -> None:
        task, self._grace_task = self._grace_task, None
        if task is not None and not task.done():
            task.cancel()
            if why:
                logger.info("MQTT: %s", why)

    async def _grace(self) -> None:
        """Stop the MQTT-started session when the broker stays away for grace_seconds."""
        await asyncio.sleep(self.settings.grace_seconds)
        if self.connected or not self._mqtt_session:
            return
        # From here on the stop must finish even if the broker comes back meanwhile.
        self._grace_task = None
        logger.warning(
            "MQTT: broker gone for %g s; stopping the session started over MQTT",
            self.settings.grace_seconds,
        )
        answer = await self._call("stop", {})
        # Cleared whatever the answer: a stale flag would let a later broker loss stop a
        # session started from the command line.
        self._mqtt_session = False
        if answer["status"] != "ok":
            logger.error("MQTT: grace-time stop failed: %s", answer.get("error"))

    # -- incoming messages ------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("MQTT: task %s failed: %r", task.get_name(), task.exception())

    async def _call(self, command: str, payload: object) -> dict[str, Any]:
        """One API call through dispatch, with a time-out; never raises (but CancelledError)."""
        transaction = payload.get("transaction") if isinstance(payload, dict) else None
        if not isinstance(transaction, str | int) or isinstance(transaction, bool):
            transaction = None
        try:
            async with asyncio.timeout(self._request_timeout):
                answer = await dispatch(self._api, command, payload)
        except TimeoutError:
            answer = error(f"{command}: no answer within {self._request_timeout:g} s", transaction)
        except Exception as err:
            # A bug in the daemon must not take the bridge down.
            logger.exception("MQTT: %s failed", command)
            answer = error(f"{command}: internal error ({type(err).__name__})", transaction)
        if command == "run" and answer.get("status") == "ok":
            self._mqtt_session = True
            if not self.connected:
                self._start_grace()
        return answer

    async def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Route one message; every command is answered, bad input never raised."""
        t = self.topics
        if topic == t.ha_status:
            await self._on_ha_status(payload, retained)
            return
        if topic.startswith(t.request_prefix):
            await self._on_request(topic[len(t.request_prefix) :], payload, retained)
            return
        prefix = f"{t.base}/"
        parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
        if len(parts) >= 2 and parts[1] == "set":
            await self._on_set(topic, parts[0], parts[2:], payload, retained)
            return
        logger.warning("MQTT: ignored a message on unknown topic %s", topic)

    async def _on_ha_status(self, payload: bytes, retained: bool) -> None:
        # A retained "online" arrives right after our own (re)connect, which publishes anyway.
        if retained or payload.strip() != b"online":
            return
        logger.info("MQTT: Home Assistant is online; publishing discovery and state again")
        await self._publish_all()

    async def _publish_answer(self, topic: str, what: str, answer: Mapping[str, Any]) -> None:
        try:
            data = encode(dict(answer))
        except (TypeError, ValueError) as err:
            logger.error("MQTT: the answer to %s is not JSON: %s", what, err)
            transaction = answer.get("transaction")
            data = encode(error(f"{what}: the answer could not be encoded", transaction))
        try:
            await self.client.publish(topic, data, qos=FREQUENT_QOS)
        except BrokerError as err:
            logger.debug("MQTT: answer to %s not sent: %s", what, err)

    async def _respond(self, command: str, answer: Mapping[str, Any]) -> None:
        await self._publish_answer(self.topics.response(command), command, answer)

    async def _refuse_request(self, command: str, message: str) -> None:
        logger.warning("MQTT: request refused: %s", message)
        await self._respond(command, error(message))

    async def _on_request(self, command: str, payload: bytes, retained: bool) -> None:
        where = self.topics.request(command)
        if not command or "/" in command:
            await self._refuse_request(
                command, f"{where}: not a request topic (<base>/bridge/request/<command>)"
            )
            return
        if retained:
            # A retained request would be carried out again at every reconnect.
            await self._refuse_request(
                command,
                f"{where}: a retained request is never carried out (publish requests unretained)",
            )
            return
        try:
            data = request_fields(payload, command)
        except BadPayload as err:
            await self._refuse_request(command, f"{where}: {err}")
            return
        if command not in COMMANDS:
            logger.warning("MQTT: unknown command %r", command)
        if len(self._tasks) >= MAX_PENDING_REQUESTS and command not in ALWAYS_ACCEPTED:
            await self._respond(command, error(f"{command}: too many requests in progress"))
            return
        self._spawn(self._request(command, data), f"mqtt-request-{command}")

    async def _request(self, command: str, data: Any) -> None:
        answer = await self._call(command, data)
        if answer["status"] != "ok" and command not in COMMANDS:
            logger.debug("MQTT: %s", answer.get("error"))
        await self._respond(command, answer)

    async def _answer_set(self, topic: str, answer: Mapping[str, Any]) -> None:
        """Answer one message on a set topic, on <base>/bridge/response/set."""
        body = {**answer, "data": {**answer.get("data", {}), "topic": topic}}
        await self._publish_answer(self.topics.set_response, topic, body)

    async def _refuse_set(self, topic: str, why: str) -> None:
        logger.warning("MQTT: ignored %s: %s", topic, why)
        await self._answer_set(topic, error(f"{topic}: {why}"))

    async def _on_set(
        self, topic: str, tid: str, entity: list[str], payload: bytes, retained: bool
    ) -> None:
        """A command for one device's entities: check all of it, then act, then answer."""
        name = self._by_tid.get(tid)
        if name is None:
            await self._refuse_set(topic, "no such device")
            return
        if retained:
            await self._refuse_set(
                topic,
                "a retained command is never carried out (publish commands unretained)",
            )
            return
        try:
            request = parse_entity(entity, payload, self._programs)
        except BadPayload as err:
            await self._refuse_set(topic, str(err))
            return
        if len(self._tasks) >= MAX_PENDING_REQUESTS and request.action not in ALWAYS_ACCEPTED:
            await self._refuse_set(topic, "too many requests in progress")
            return
        await self._apply_set(topic, name, request)

    async def _apply_set(self, topic: str, name: str, request: SetRequest) -> None:
        """Choose the program and scale at once; the API calls (in order) in a task of their own."""
        calls: list[tuple[str, dict[str, Any]]] = []
        if request.program is not None:
            self._selected_program[name] = request.program
        if request.scale is not None:
            self._selected_scale[name] = round(request.scale, 4)
            if self._full_state(name)["running"]:
                calls.append(("scale", {"scale": request.scale}))
        if request.well_today is not None:
            self._well_on = date.today() if request.well_today else None
            for each in self._devices:
                self._mark_dirty(each)
        self._mark_dirty(name)
        if request.heater is not None:
            # Through the API like everything else; see docs/mqtt.md for when it is refused.
            calls.append(("heater", {"device": name, "on": request.heater}))
        if request.action is not None:
            calls.append(self._action(name, request.action, request))
        if not calls:
            await self._answer_set(topic, ok({"done": []}))
            return
        self._spawn(self._set_calls(topic, name, calls), f"mqtt-set-{calls[-1][0]}")

    def _action(
        self, name: str, action: str, request: SetRequest | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The API command a button means for this device."""
        if action != "start":
            return action, {}
        if self._full_state(name)["paused"]:
            return "resume", {}
        # The daemon judges the confirmations (controller.readiness): the bridge only
        # passes on what the person said, today, through the switch or this message.
        return "run", {
            "program": self._selected_program.get(name, self._default_program),
            "devices": [name],
            "scale": self._selected_scale.get(name, SCALE_MAX),
            "well_today": self._well_today(),
            "accept_caution": bool(request and request.accept_caution),
            "override_spacing": bool(request and request.override_spacing),
        }

    async def _set_calls(
        self, topic: str, name: str, calls: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        done: list[str] = []
        refused: list[str] = []
        for command, payload in calls:
            answer = await self._call(command, payload)
            if answer["status"] == "ok":
                logger.info("MQTT: %s: %s done", name, command)
                done.append(command)
            else:
                logger.warning("MQTT: %s: %s refused: %s", name, command, answer.get("error"))
                refused.append(f"{command} refused: {answer.get('error')}")
        if refused:
            await self._answer_set(topic, error(f"{topic}: {'; '.join(refused)}"))
        else:
            await self._answer_set(topic, ok({"done": done}))
