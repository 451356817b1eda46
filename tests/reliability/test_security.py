"""Security: who may reach the daemon, what is never shown, what is never executed.

- the control socket is for its owner only (socket 0600 in a 0700 folder), or
  also a configured group (0660 / 0750); another user cannot connect;
- the MQTT password is never printed or logged (config show, config check, the
  bridge's logging at DEBUG, a refused login), and TLS with credentials works
  against a real mosquitto (docs/mqtt.md describes the settings);
- nothing in a program file or a request is executed: both are data;
- the registry and history file are private: tests/controller/test_store.py::
  test_default_location_is_private (named in docs/safety.md).
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import api, cli
from controller.config import load_config
from controller.control import ControlServer, call
from controller.errors import BrokerError
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.settings import MqttSettings
from devices.errors import ConfigError
from programs.loader import parse_program
from tests.controller.mqtt.conftest import Broker, find_mosquitto
from tests.reliability.world import short_dir

PASSWORD = "Tr0ub4dor&3-never-shown"
OTHER_USER = 65534
"""nobody: a user that is not the daemon's owner."""
SYSTEM_PYTHON = "/usr/bin/python3"
WAIT = 10.0


def mode(path: Path) -> int:
    """The permission bits of a path."""
    return stat.S_IMODE(path.lstat().st_mode)


class EchoAPI:
    """A DaemonAPI answering every request with its command."""

    async def handle(self, command: str, request: api.Request) -> Any:
        """Answer with the command."""
        return {"command": command}


@pytest.fixture
def folder() -> Iterator[Path]:
    """A fresh folder with a short path (socket paths are limited to ~100 bytes)."""
    path = short_dir("msd-sec-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def connect_as(uid: int, path: Path) -> subprocess.CompletedProcess[str]:
    """Try to connect to a Unix socket as another user (needs root to switch user)."""
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(path)!r})\n"
        "except OSError as err:\n"
        "    print(type(err).__name__); sys.exit(1)\n"
        "print('connected')\n"
    )
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", script],
        capture_output=True,
        text=True,
        user=uid,
        group=uid,
        extra_groups=[],
        timeout=WAIT,
        cwd="/",
    )


# -- the control socket -------------------------------------------------------------------


async def test_the_control_socket_is_for_its_owner_only(folder: Path) -> None:
    path = folder / "run" / "control.sock"
    server = ControlServer(EchoAPI(), path)
    await server.start()
    try:
        assert mode(path.parent) == 0o700
        assert mode(path) == 0o600
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert path.stat().st_uid == os.getuid()
        answer = await call(path, "status")
        assert answer == {"status": "ok", "data": {"command": "status"}}
        if os.geteuid() == 0:
            # As another user, the kernel refuses: no permission on the folder or the socket.
            other = await asyncio.to_thread(connect_as, OTHER_USER, path)
            assert other.returncode == 1, other
            assert "PermissionError" in other.stdout
    finally:
        await server.close()
    assert not path.exists(), "the socket is removed when the daemon stops"


async def test_a_configured_group_may_connect_too(folder: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    path = folder / "run" / "control.sock"
    server = ControlServer(EchoAPI(), path, group=group)
    await server.start()
    try:
        assert mode(path.parent) == 0o750
        assert mode(path) == 0o660
        assert path.stat().st_gid == os.getgid()
        assert path.parent.stat().st_gid == os.getgid()
        if os.geteuid() == 0:
            # Not in the group: still refused.
            other = await asyncio.to_thread(connect_as, OTHER_USER, path)
            assert other.returncode == 1, other
    finally:
        await server.close()


async def test_no_socket_in_a_folder_of_someone_else(folder: Path) -> None:
    foreign = folder / "foreign"
    foreign.mkdir(mode=0o777)
    if os.geteuid() == 0:
        os.chown(foreign, OTHER_USER, OTHER_USER)
        with pytest.raises(ConfigError, match="not owned by this user"):
            await ControlServer(EchoAPI(), foreign / "control.sock").start()
    # A file that is not a socket is never replaced.
    mine = folder / "mine"
    mine.mkdir(mode=0o700)
    (mine / "control.sock").write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        await ControlServer(EchoAPI(), mine / "control.sock").start()
    assert (mine / "control.sock").read_text() == "not a socket"


async def test_a_second_daemon_cannot_take_the_socket(folder: Path) -> None:
    path = folder / "run" / "control.sock"
    first = ControlServer(EchoAPI(), path)
    await first.start()
    try:
        with pytest.raises(ConfigError, match="already listens"):
            await ControlServer(EchoAPI(), path).start()
        assert (await call(path, "status"))["status"] == "ok"
    finally:
        await first.close()


def test_the_socket_group_must_exist() -> None:
    with pytest.raises(ConfigError, match="no group named"):
        asyncio.run(
            ControlServer(EchoAPI(), Path("/nonexistent/x.sock"), group="no-such-grp").start()
        )


# -- credentials ------------------------------------------------------------------------------


def write_config(folder: Path, name: str, **mqtt: Any) -> Path:
    """A configuration file with an MQTT section (and credentials)."""
    lines = ["[mqtt]", "enabled = true", 'host = "127.0.0.1"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_password_is_never_printed_by_the_command_line(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(folder))
    monkeypatch.setenv("MASSAGED_DATA_DIR", str(folder))
    good = write_config(folder, "good.toml", username="massaged", password=PASSWORD)
    assert cli.main(["-vv", "config", "show", "--config", str(good)]) == 0
    assert cli.main(["-vv", "config", "check", "--config", str(good)]) == 0
    shown = capsys.readouterr()
    assert "********" in shown.out
    # Broken next to the password: the error names the problem, never the secret.
    bad = write_config(folder, "bad.toml", username="massaged", password=PASSWORD, tls="yes")
    assert cli.main(["-vv", "config", "check", "--config", str(bad)]) == 1
    monkeypatch.setenv("MASSAGED_MQTT_PASSWORD", PASSWORD)
    monkeypatch.setenv("MASSAGED_MQTT_PORT", "not a port")
    assert cli.main(["-vv", "config", "show", "--config", str(good)]) == 1
    failed = capsys.readouterr()
    assert "error" in failed.err
    everything = shown.out + shown.err + failed.out + failed.err + caplog.text
    assert PASSWORD not in everything
    config = load_config(good, environ={"MASSAGED_CONFIG_DIR": str(folder)})
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config.mqtt.summary())


def auth_broker(folder: Path, *, tls: tuple[Path, Path] | None = None) -> Broker:
    """A mosquitto that wants a user name and password (and TLS when given a cert and key)."""
    binary = find_mosquitto()
    assert binary is not None, "mosquitto is needed (./dev test installs it)"
    broker = Broker(binary, folder)
    passwords = folder / "passwords"
    passwords.write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwords), "massaged", PASSWORD],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    passwords.chmod(0o600)
    lines = [
        # As root, mosquitto would drop to its own user, who cannot read our private folder.
        *(["user root"] if os.geteuid() == 0 else []),
        f"listener {broker.port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {passwords}",
        "persistence false",
        "log_type error",
        "log_type warning",
    ]
    if tls is not None:
        cert, key = tls
        lines += [f"cafile {cert}", f"certfile {cert}", f"keyfile {key}"]
    broker.config.write_text("\n".join(lines) + "\n")
    return broker


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    return cert, key


def bridge_for(broker: Broker, **settings: Any) -> MqttBridge:
    """A bridge over the echo API with quick reconnects."""
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": broker.port,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        **settings,
    }
    return MqttBridge(MqttSettings(**values), EchoAPI(), programs=["collar-zone"], version="test")


async def test_credentials_over_tls_work_and_are_never_logged(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cert, key = self_signed(folder)
    broker = auth_broker(folder, tls=(cert, key))
    try:
        await broker.astart()
        good = bridge_for(broker, username="massaged", password=PASSWORD, tls=True, ca_file=cert)
        await good.start()
        try:
            await good.wait_connected(WAIT)
        finally:
            await good.close()
        # A wrong password is refused, and the refusal logs no password either.
        wrong = f"{PASSWORD}-wrong"
        refused = bridge_for(broker, username="massaged", password=wrong, tls=True, ca_file=cert)
        await refused.start()
        try:
            with pytest.raises(BrokerError):
                await refused.wait_connected(1.0)
        finally:
            await refused.close()
        # Without TLS the broker does not even answer MQTT.
        plain = bridge_for(broker, username="massaged", password=PASSWORD)
        await plain.start()
        try:
            with pytest.raises(BrokerError):
                await plain.wait_connected(1.0)
        finally:
            await plain.close()
    finally:
        broker.stop()
    assert "MQTT: connected to 127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text  # nor the wrong one, which begins with it


# -- nothing is executed ----------------------------------------------------------------------

HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "$(touch {marker})",
    "`touch {marker}`",
    "; touch {marker}",
    "{{{{ ''.__class__.__mro__ }}}}",
    "../../../../{marker}",
]


def test_a_program_file_is_data_only(folder: Path) -> None:
    marker = folder / "executed"
    for text in HOSTILE:
        value = text.format(marker=marker)
        program = parse_program(
            f"""
id = "hostile"
title = {json.dumps(value[:100])}
audience = "adult"
max_duration = 10
description = {json.dumps(value)}
cites = {json.dumps(value)}

[[steps]]
technique = "stroking"
duration_s = 10
intensity = 0.3
label = {json.dumps(value[:80])}
""",
            source="hostile.toml",
        )
        assert program.description == value  # kept as text, nothing more
    assert not marker.exists()


async def test_a_request_is_data_only(folder: Path) -> None:
    marker = folder / "executed"
    fake = EchoAPI()
    for text in HOSTILE:
        value = text.format(marker=marker)
        for command, payload in (
            ("run", {"program": value}),
            ("run", {"program": "collar-zone", "profile": value, "devices": [value]}),
            ("pair", {"address": value, "name": value}),
            ("rename", {"name": value, "new_name": value}),
            (value, {}),
        ):
            answer = await api.dispatch(fake, command, payload)
            assert answer["status"] in ("ok", "error")
    assert not marker.exists()
