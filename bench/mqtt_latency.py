"""MQTT command latency: a command published to the bridge until its first frame reaches a device.

A mosquitto of its own on a free loopback port, the simulator server
(bench/_harness.py) with the three devices, and ``massaged daemon
--simulator --auto-pair`` with its MQTT bridge on that broker. The daemon runs
``bench-steady`` (a program written to a private program folder: every
output steady for minutes), so the only output change on the belt is the one
a command causes. Each trial publishes ``massaged/bridge/request/scale``
(alternately 0.5 and 1.0) and takes the time until the belt's first motor
changes in the simulator (the arrival of the SET_LEVELS frame that carries
the new scale).

Baseline in the same run, interleaved with the trials: the benchmark's own
client publishes to an echo client on another connection through the same
broker, which publishes it back (QoS 1 throughout; both clients set
TCP_NODELAY, as a bare, best-case client would). The round trip (there and
back) is the baseline of the ratio; the one-way trip (publish -> subscriber)
is reported beside it. The same command through the control socket (``api``)
is measured too, which tells the bridge's share from the daemon's.

Each broker set-up runs in turn (--brokers): ``default`` is mosquitto as
installed (``set_tcp_nodelay false``: Nagle's algorithm on its sockets),
``nodelay`` adds ``set_tcp_nodelay true``. Without the bridge
(controller.mqtt.runtime missing) the MQTT figures are reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h

logger = logging.getLogger(__name__)

PROGRAM_ID = "bench-steady"
STEADY_STEPS = 20
"""Vibration steps of 15 s (the method's longest): five minutes of steady outputs."""
RAMP_WAIT_S = 3.0
"""The session's start ramp (2 s) is over after this long (--settle)."""
ANSWER_TIMEOUT_S = 10.0
ECHO_TOPIC = "bench/echo"
REPLY_TOPIC = "bench/reply"
BROKERS = ("default", "nodelay")
REQUEST_TOPIC = "massaged/bridge/request/scale"


def steady_program() -> str:
    """The benchmark's program: every output steady, step after step."""
    steps = "".join(
        f'\n[[steps]]\ntechnique = "vibration"\nzone = "collar_zone"\n'
        f'duration_s = 15\nintensity = 0.6\nlabel = "Steady {i + 1}"\n'
        for i in range(STEADY_STEPS)
    )
    return (
        f'id = "{PROGRAM_ID}"\ntitle = "Benchmark: steady outputs"\naudience = "adult"\n'
        'max_duration = 30\ncites = "none: a benchmark fixture, not a massage"\n'
        'description = "Steady outputs, so that the effect of a command stands out."\n' + steps
    )


class Listener:
    """Records when each message of a topic arrived, by payload."""

    def __init__(self, client: Any, topic: str, reply_to: str | None = None) -> None:
        self.client = client
        self.topic = topic
        self.reply_to = reply_to
        """Publish every message received back on this topic (the echo's side)."""
        self.arrived: dict[str, float] = {}
        self.new = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe and read in the background."""
        await self.client.subscribe(self.topic, qos=1)
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.client.messages:
            if not message.topic.matches(self.topic):
                continue
            key = bytes(message.payload).decode()
            self.arrived[key] = time.monotonic()
            self.new.set()
            if self.reply_to is not None:
                await self.client.publish(self.reply_to, key, qos=1)

    async def wait(self, key: str, timeout: float = ANSWER_TIMEOUT_S) -> float:
        """The arrival time of the message with this payload."""
        async with asyncio.timeout(timeout):
            while key not in self.arrived:
                self.new.clear()
                await self.new.wait()
        return self.arrived.pop(key)

    async def close(self) -> None:
        """Stop reading."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def first_change(
    sim: h.SimServer, t0: float, timeout: float = ANSWER_TIMEOUT_S
) -> float | None:
    """Seconds from t0 to the first belt motor change the simulator saw after t0."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [t for t, _, _, _ in await sim.rows() if t >= t0]
        if times:
            return min(times) - t0
        await asyncio.sleep(0.005)
    return None


async def wait_online(client: Any, timeout: float = h.START_TIMEOUT_S) -> None:
    """Wait for the bridge's retained online state (it has subscribed to requests by then)."""
    await client.subscribe("massaged/bridge/state", qos=1)
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches("massaged/bridge/state") and b"online" in bytes(
                message.payload
            ):
                break
    await client.unsubscribe("massaged/bridge/state")


def bench_client(port: int, name: str) -> Any:
    """An aiomqtt client of the benchmark's own (TCP_NODELAY: a bare, best-case client)."""
    import aiomqtt

    nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return aiomqtt.Client("127.0.0.1", port, identifier=name, socket_options=[nodelay])


async def measure(args: argparse.Namespace, binary: str, nodelay: bool) -> h.Json:
    """Bare trips, MQTT commands and API commands, interleaved, on one broker set-up."""
    from controller import control

    no_bridge = h.bridge_available()
    ws = h.Workspace()
    broker = h.broker(ws, binary, nodelay=nodelay)
    sim = h.SimServer(ws, h.device_specs(args.devices), channels={"motor1"})
    daemon = None
    clients: list[Any] = []
    listeners: list[Listener] = []
    one_way: list[float] = []
    round_trip: list[float] = []
    over_mqtt: list[float] = []
    over_api: list[float] = []
    missed = {"mqtt": 0, "api": 0}
    try:
        await broker.astart()
        for name in ("bench-pub", "bench-echo"):
            client = bench_client(broker.port, name)
            await client.__aenter__()
            clients.append(client)
        publisher, echoer = clients
        ws.write_program(PROGRAM_ID, steady_program())
        await sim.start()
        port = broker.port if no_bridge is None else None
        ws.write_config(h.daemon_config(mqtt_port=port))
        daemon = await h.spawn_controller(ws, "daemon", "daemon", "--simulator", "--auto-pair")
        await h.wait_devices_up(ws.socket, args.devices)
        if no_bridge is None:
            await wait_online(publisher)
        echo = Listener(echoer, ECHO_TOPIC, reply_to=REPLY_TOPIC)
        replies = Listener(publisher, REPLY_TOPIC)
        for listener in (echo, replies):
            listeners.append(listener)
            await listener.start()
        answer = await control.call(ws.socket, "run", {"program": PROGRAM_ID, "well_today": True})
        if answer.get("status") != "ok":
            raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
        await asyncio.sleep(args.settle)
        scale = 1.0
        for i in range(args.trials):
            key = f"{i}"
            t0 = time.monotonic()
            await publisher.publish(ECHO_TOPIC, key, qos=1)
            one_way.append(await echo.wait(key) - t0)
            round_trip.append(await replies.wait(key) - t0)
            if no_bridge is None:
                scale = 0.5 if scale == 1.0 else 1.0
                await sim.rows()
                t0 = time.monotonic()
                await publisher.publish(REQUEST_TOPIC, json.dumps({"scale": scale}), qos=1)
                gap = await first_change(sim, t0)
                if gap is None:
                    missed["mqtt"] += 1
                else:
                    over_mqtt.append(gap)
            scale = 0.5 if scale == 1.0 else 1.0
            await sim.rows()
            t0 = time.monotonic()
            call = asyncio.get_running_loop().create_task(
                control.call(ws.socket, "scale", {"scale": scale})
            )
            gap = await first_change(sim, t0)
            await call
            if gap is None:
                missed["api"] += 1
            else:
                over_api.append(gap)
            # Off the runner's 20 Hz rhythm, so the trials sample every phase of it.
            await asyncio.sleep(random.uniform(0.05, 0.15))
        with contextlib.suppress(Exception):
            await control.call(ws.socket, "emergency_stop")
    finally:
        for listener in listeners:
            await listener.close()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        await h.stop_process(daemon)
        await sim.close()
        await broker.astop()
        ws.close()
    trip = h.summarize_ms(round_trip)
    hop = h.summarize_ms(one_way)
    mqtt_stats = {**h.summarize_ms(over_mqtt), "missed": missed["mqtt"]}
    api_stats = {**h.summarize_ms(over_api), "missed": missed["api"]}
    result: h.Json = {
        "broker": "set_tcp_nodelay true" if nodelay else "mosquitto defaults",
        "baseline_round_trip": trip,
        "baseline_one_way": hop,
        "mqtt_command": mqtt_stats if no_bridge is None else None,
        "api_command": api_stats,
        "ratio_p50": h.ratio(mqtt_stats["p50_ms"], trip["p50_ms"]),
        "ratio_p99": h.ratio(mqtt_stats["p99_ms"], trip["p99_ms"]),
        "ratio_one_way_p50": h.ratio(mqtt_stats["p50_ms"], hop["p50_ms"]),
        "ratio_one_way_p99": h.ratio(mqtt_stats["p99_ms"], hop["p99_ms"]),
    }
    h.say(f"broker: {result['broker']}; {args.trials} trial(s), command 'scale' to the belt")
    h.say(f"  bare round trip (there and back): {h.fmt(trip)}")
    h.say(f"  bare one way (publish -> subscriber): {h.fmt(hop)}")
    if no_bridge is None:
        h.say(f"  MQTT command -> device: {h.fmt(mqtt_stats)}, missed {missed['mqtt']}")
        h.say(
            f"  ratio to the round trip: p50 {result['ratio_p50']}, p99 {result['ratio_p99']}; "
            f"to one way: p50 {result['ratio_one_way_p50']}, p99 {result['ratio_one_way_p99']}"
        )
    else:
        h.say(f"  MQTT command: skipped: {no_bridge}")
    h.say(f"  API command -> device: {h.fmt(api_stats)}, missed {missed['api']}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="A command published to the MQTT bridge until its first frame reaches "
        "a simulated device, against a bare publish-to-subscriber trip through the same broker."
    )
    p.add_argument("--trials", type=int, default=100, help="commands (100)")
    p.add_argument("--devices", type=int, default=3, help="3: belt, pillow, butterfly; else belts")
    p.add_argument(
        "--settle",
        type=float,
        default=RAMP_WAIT_S,
        help=f"seconds between the session's start and the first trial ({RAMP_WAIT_S:g})",
    )
    p.add_argument(
        "--brokers",
        type=h.comma_list,
        default=list(BROKERS),
        help="broker set-ups to measure: default (mosquitto's defaults), nodelay "
        "(set_tcp_nodelay true); default both",
    )
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be at least 1")
    if args.devices < 1:
        p.error("--devices must be at least 1")
    if not args.brokers or set(args.brokers) - set(BROKERS):
        p.error(f"--brokers takes {', '.join(BROKERS)}")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """The benchmark."""
    began = time.monotonic()
    binary = h.find_mosquitto()
    runs = []
    if binary is not None:
        runs = [await measure(args, binary, name == "nodelay") for name in args.brokers]
    no_bridge = h.bridge_available()
    return {
        "benchmark": "mqtt_latency",
        "machine": h.machine(),
        "trials": args.trials,
        "devices": args.devices,
        "elapsed_s": round(time.monotonic() - began, 1),
        "runs": runs,
        "skipped": None if no_bridge is None else f"mqtt: {no_bridge}",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
