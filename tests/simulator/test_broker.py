"""simulator.broker: a private mosquitto that starts, accepts, stops, restarts on its port, and
says how to install mosquitto when there is none.

These tests need the real mosquitto and FAIL (MosquittoMissingError, with the way to install
it) when it is missing, like the MQTT tests: a skipped test would hide a broken launcher.
The fakes below stand in for mosquitto only where the real one cannot misbehave on demand
(ignoring SIGTERM, never listening).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from devices.errors import MassagedError
from simulator.broker import (
    HOST,
    Broker,
    accepting,
    require_mosquitto,
)
from simulator.errors import MosquittoError, MosquittoMissingError

CONNECT = bytes([0x10, 17, 0, 4, *b"MQTT", 4, 0x02, 0, 60, 0, 5, *b"probe"])
"""MQTT 3.1.1 CONNECT: clean session, keep-alive 60 s, client id "probe" (17 bytes after the
fixed header)."""
CONNACK_OK = bytes([0x20, 2, 0, 0])
"""CONNACK: no session present, return code 0 (accepted)."""


@pytest.fixture
def mosquitto() -> str:
    """The real mosquitto binary (MosquittoMissingError when there is none: fail, never skip)."""
    return require_mosquitto()


def mqtt_handshake(port: int) -> bytes:
    """Connect with a plain socket, send an MQTT CONNECT and return the first 4 bytes back."""
    with socket.create_connection((HOST, port), timeout=5.0) as sock:
        sock.sendall(CONNECT)
        answer = b""
        while len(answer) < len(CONNACK_OK):
            chunk = sock.recv(len(CONNACK_OK) - len(answer))
            if not chunk:
                break
            answer += chunk
        return answer


def cut_off(client: socket.socket) -> bool:
    """True when the peer has closed the connection (EOF, or a reset)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def gone(pid: int) -> bool:
    """True when no process has this id (ours are waited for, so the id is free at once)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def fake_mosquitto(folder: Path, *, listen: bool, ignore_sigterm: bool) -> str:
    """An executable that takes mosquitto's ``-c CONFIG`` and notes its pid in fake.pid."""
    script = folder / "fake-mosquitto"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, re, signal, socket, sys, time\n"
        f"if {ignore_sigterm!r}:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(folder / 'fake.pid')!r}, 'w').write(str(os.getpid()))\n"
        "config = open(sys.argv[2]).read()\n"
        "port = int(re.search(r'listener (\\d+)', config).group(1))\n"
        f"if {listen!r}:\n"
        "    server = socket.create_server(('127.0.0.1', port))\n"
        "time.sleep(60)\n"
    )
    script.chmod(0o755)
    return str(script)


def fake_pid(folder: Path) -> int:
    """The pid the fake noted."""
    return int((folder / "fake.pid").read_text())


def test_start_accepts_a_connection_and_stop_ends_the_process(
    mosquitto: str, tmp_path: Path
) -> None:
    broker = Broker(mosquitto, tmp_path)
    assert not broker.running
    assert "listener" in broker.config.read_text()
    broker.start()
    try:
        assert broker.running
        pid = broker.pid
        assert pid is not None
        assert mqtt_handshake(broker.port) == CONNACK_OK
    finally:
        broker.stop()
    assert not broker.running
    assert broker.pid is None
    assert gone(pid)
    assert not accepting(broker.port)
    broker.stop()  # a second stop is harmless


async def test_restart_comes_back_on_the_same_port(mosquitto: str, tmp_path: Path) -> None:
    broker = Broker(mosquitto, tmp_path)
    await broker.astart()
    try:
        port, first = broker.port, broker.pid
        assert first is not None
        # A client connected before the restart loses its connection (killed: no goodbye).
        with socket.create_connection((HOST, port), timeout=5.0) as client:
            client.sendall(CONNECT)
            assert client.recv(4) == CONNACK_OK
            await broker.restart()
            assert cut_off(client)
        assert gone(first)
        assert broker.port == port
        assert broker.pid not in (None, first)
        assert mqtt_handshake(port) == CONNACK_OK
        # Killed and started by hand, as the reconnection tests do it: the same port again.
        broker.kill()
        assert not broker.running
        assert not accepting(port)
        await broker.astart()
        assert broker.port == port
        assert mqtt_handshake(port) == CONNACK_OK
    finally:
        await broker.astop()
    assert not broker.running
    assert not accepting(port)


async def test_context_managers_start_and_stop(mosquitto: str, tmp_path: Path) -> None:
    # The folders need not exist yet: the broker makes them (docs/simulator.md).
    with Broker(mosquitto, tmp_path / "sync") as b:
        assert mqtt_handshake(b.port) == CONNACK_OK
    assert not b.running
    assert not accepting(b.port)
    async with Broker(mosquitto, tmp_path / "async") as a:
        assert mqtt_handshake(a.port) == CONNACK_OK
    assert not a.running
    assert not accepting(a.port)


def test_nodelay_is_written_only_when_asked(mosquitto: str, tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "nodelay").mkdir()
    default = Broker(mosquitto, tmp_path / "default")
    assert "set_tcp_nodelay" not in default.config.read_text()
    with Broker(mosquitto, tmp_path / "nodelay", nodelay=True) as nodelay:
        assert "set_tcp_nodelay true" in nodelay.config.read_text().splitlines()
        assert mqtt_handshake(nodelay.port) == CONNACK_OK  # mosquitto took the option


def test_a_missing_mosquitto_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(MosquittoMissingError) as caught:
        require_mosquitto(search_path=str(tmp_path), folders=())
    assert isinstance(caught.value, MassagedError)
    message = str(caught.value)
    assert "mosquitto not found" in message
    assert "apt-get install mosquitto" in message
    assert "brew install mosquitto" in message
    # A binary named but not there: the same error, and no process or open log behind it.
    broker = Broker(str(tmp_path / "no-such-mosquitto"), tmp_path)
    with pytest.raises(MosquittoMissingError, match="apt-get install mosquitto"):
        broker.start()
    assert not broker.running


def test_a_mosquitto_that_exits_at_start_is_reported_with_its_log(
    mosquitto: str, tmp_path: Path
) -> None:
    broker = Broker(mosquitto, tmp_path)
    broker.config.write_text("no_such_option true\n")
    with pytest.raises(MosquittoError, match="exited with code") as caught:
        broker.start()
    assert "no_such_option" in str(caught.value)  # mosquitto's own complaint, from its log
    assert not broker.running


def test_a_broker_that_never_listens_times_out_and_is_killed(tmp_path: Path) -> None:
    broker = Broker(fake_mosquitto(tmp_path, listen=False, ignore_sigterm=True), tmp_path)
    with pytest.raises(MosquittoError, match="did not listen"):
        broker.start(timeout=0.5)
    assert not broker.running
    assert gone(fake_pid(tmp_path))


async def test_a_broker_that_never_listens_times_out_and_is_killed_async(tmp_path: Path) -> None:
    broker = Broker(fake_mosquitto(tmp_path, listen=False, ignore_sigterm=True), tmp_path)
    with pytest.raises(MosquittoError, match="did not listen"):
        await broker.astart(timeout=0.5)
    assert not broker.running
    assert gone(fake_pid(tmp_path))


def test_stop_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    broker = Broker(fake_mosquitto(tmp_path, listen=True, ignore_sigterm=True), tmp_path)
    broker.start()
    broker.stop(timeout=0.3)
    assert not broker.running
    assert gone(fake_pid(tmp_path))


async def test_astop_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    broker = Broker(fake_mosquitto(tmp_path, listen=True, ignore_sigterm=True), tmp_path)
    await broker.astart()
    await broker.astop(timeout=0.3)
    assert not broker.running
    assert gone(fake_pid(tmp_path))


def test_a_port_taken_before_the_first_start_moves_to_another(
    mosquitto: str, tmp_path: Path
) -> None:
    # Between choosing a free port and mosquitto binding it, anything else may take it (a
    # bound socket, as an outgoing connection's local port is): the first start then goes
    # to another port. Once it has listened, its port is kept.
    broker = Broker(mosquitto, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, broker.port))
        first = broker.port
        try:
            broker.start()
            assert broker.port != first
            assert f"listener {broker.port} {HOST}" in broker.config.read_text()
            assert mqtt_handshake(broker.port) == CONNACK_OK
            broker.kill()
        finally:
            broker.kill()
    # Its port taken after it listened: a restart fails and says so, on the same port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, broker.port))
        kept = broker.port
        with pytest.raises(MosquittoError, match="in use"):
            broker.start()
        assert broker.port == kept


def test_a_free_port_is_below_the_ephemeral_range() -> None:
    from simulator.broker import EPHEMERAL_RANGE, free_port

    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    assert all(1024 <= free_port() < low for _ in range(20))
