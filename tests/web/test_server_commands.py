"""The API commands the page needs, through HTTP: each one's validation and effect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import api
from controller.daemon import Daemon
from controller.web.server import WebServer
from controller.web.settings import WebSettings
from tests.web.server_fixtures import WebClient, bare_daemon, client, serving

GOOD_PROGRAM = """\
id = "my-neck"
title = "My neck"
audience = "adult"
max_duration = 5
description = "Stroking, then rest."
cites = "method: stroking"

[[steps]]
technique = "stroking"
repetitions = 3
intensity = 0.3

[[steps]]
technique = "rest"
duration_s = 10
"""


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[tuple[Daemon, WebClient]]:
    async with (
        bare_daemon(tmp_path) as daemon,
        serving(daemon, tmp_path) as server,
        client(server) as c,
    ):
        yield daemon, c


def test_every_new_command_is_in_the_one_api() -> None:
    for name in (
        "profiles",
        "profile_set",
        "course",
        "well_today",
        "program",
        "program_check",
        "program_save",
        "pulse",
    ):
        assert name in api.COMMANDS
        assert name in api.REQUEST_MODELS


@pytest.mark.parametrize(
    ("name", "body", "word"),
    [
        ("profile_set", {}, "name"),
        ("profile_set", {"name": "me", "caps": {"belt": 1.5}}, "caps.belt"),
        ("profile_set", {"name": "me", "caps": {"cat": 0.5}}, "caps.cat"),
        ("profile_set", {"name": "me", "audience": "baby"}, "audience"),
        ("profile_set", {"name": "me", "contraindications": ["fevr"]}, "unknown contraindication"),
        ("profile_set", {"name": "me", "today": ["nope"]}, "unknown contraindication"),
        ("profile_set", {"name": "me", "ems_max_raise_per_100ms": 9}, "ems_max_raise"),
        ("course", {"profile": ""}, "profile"),
        ("well_today", {}, "well"),
        ("well_today", {"well": "yes"}, "well"),
        ("program", {}, "name"),
        ("program", {"name": 5}, "name"),
        ("program_check", {}, "text"),
        ("program_check", {"text": "x" * (api.PROGRAM_TEXT_MAX + 1)}, "text"),
        ("program_save", {"name": "a"}, "text"),
        ("pulse", {}, "not both"),
        ("pulse", {"name": "belt", "address": "AA"}, "not both"),
        ("pulse", {"name": "belt", "kind": "belt"}, "kind goes with address"),
        ("pulse", {"address": "AA", "kind": "toaster"}, "kind"),
    ],
)
async def test_bad_requests_are_400_with_the_field_named(
    web: tuple[Daemon, WebClient], name: str, body: dict[str, object], word: str
) -> None:
    daemon, c = web
    profiles_before = daemon.store.list_profiles()
    status, answer = await c.command(name, body)
    assert status == 400, answer
    assert answer["status"] == "error"
    assert word in answer["error"]
    assert answer["error"].count("\n") == 0
    assert daemon.store.list_profiles() == profiles_before  # nothing half-applied


async def test_profiles_list_contraindications_and_what_each_means(
    web: tuple[Daemon, WebClient],
) -> None:
    _, c = web
    status, answer = await c.command("profiles")
    assert status == 200
    data = answer["data"]
    assert data["default"] == "default"
    assert [p["name"] for p in data["profiles"]] == ["default"]
    meanings = {item["name"]: item for item in data["contraindications"]}
    assert "fever" in meanings["fever"]["reason"]
    assert meanings["pregnancy"]["ems_only"] is True


async def test_profile_set_saves_and_the_profile_then_blocks_a_start(
    web: tuple[Daemon, WebClient],
) -> None:
    daemon, c = web
    status, answer = await c.command(
        "profile_set",
        {"name": "anna", "caps": {"belt": 0.5}, "contraindications": ["Fever"], "today": []},
    )
    assert status == 200, answer
    assert answer["data"]["caps"] == {"belt": 0.5, "pillow": 1.0, "butterfly": 0.5}
    assert answer["data"]["contraindications"] == ["fever"]
    assert "fever" in answer["data"]["contraindication_reasons"]["fever"]
    stored = daemon.store.get_profile("anna")
    assert stored.caps.belt == 0.5
    status, answer = await c.command("profile_set", {"name": "anna", "today": ["hypertension"]})
    assert status == 200
    assert answer["data"]["today"] == ["hypertension"]
    assert daemon.store.get_profile("anna").caps.belt == 0.5  # untouched fields kept
    status, answer = await c.command(
        "run", {"program": "collar-zone", "profile": "anna", "well_today": True}
    )
    assert status == 409
    assert "postponed" in answer["error"]


async def test_course_and_todays_check(web: tuple[Daemon, WebClient]) -> None:
    _, c = web
    status, answer = await c.command("course")
    assert status == 200
    data = answer["data"]
    assert data["course_sessions"] == 15
    assert data["course"] is None
    assert data["well_today"] is None
    assert data["rest_after_s"] == 900
    assert data["questions"][0]["confirm"] == "well_today"
    status, answer = await c.command("well_today", {"well": False})
    assert status == 200
    assert answer["data"]["well"] is False
    assert "postpone" in answer["data"]["advice"]
    assert (await c.command("course"))[1]["data"]["well_today"] is False
    await c.command("well_today", {"well": True})
    assert (await c.command("course"))[1]["data"]["well_today"] is True
    status, answer = await c.command("well_today", {"well": True, "profile": "nobody"})
    assert status == 409
    assert "nobody" in answer["error"]


async def test_a_program_with_its_steps_and_plot(web: tuple[Daemon, WebClient]) -> None:
    _, c = web
    status, answer = await c.command("program", {"name": "collar-zone"})
    assert status == 200
    data = answer["data"]
    assert data["id"] == "collar-zone"
    assert data["builtin"] is True
    assert data["text"].startswith("#") or "id = " in data["text"]
    first = data["steps"][0]
    assert {"technique", "movements", "method_count", "cite", "start", "end"} <= first.keys()
    devices = data["timeline"]["devices"]
    assert {panel["kind"] for panel in devices.values()} == {"belt", "pillow", "butterfly"}
    for panel in devices.values():
        for points in panel["series"].values():
            assert all(0.0 <= v <= 1.0 for _, v in points)
            assert [t for t, _ in points] == sorted(t for t, _ in points)
    status, answer = await c.command("program", {"name": "no-such"})
    assert status == 409
    assert "no program 'no-such'" in answer["error"]
    status, answer = await c.command("program", {"name": "../etc/passwd"})
    assert status == 409
    assert "not a program id" in answer["error"]


async def test_program_check_names_line_and_column(web: tuple[Daemon, WebClient]) -> None:
    _, c = web
    status, answer = await c.command("program_check", {"text": GOOD_PROGRAM})
    assert status == 200
    assert answer["data"]["valid"] is True
    assert answer["data"]["program"]["id"] == "my-neck"
    broken = GOOD_PROGRAM.replace('[[steps]]\ntechnique = "rest"', '[[steps]\ntechnique = "rest"')
    status, answer = await c.command("program_check", {"text": broken})
    assert status == 200
    data = answer["data"]
    assert data["valid"] is False
    assert data["issues"][0]["line"] == 13
    assert data["issues"][0]["column"] is not None
    wrong = GOOD_PROGRAM.replace("repetitions = 3", "repetitions = 300")
    data = (await c.command("program_check", {"text": wrong}))[1]["data"]
    assert data["valid"] is False
    assert data["issues"][0]["line"] == 10
    assert data["issues"][0]["field"] == "repetitions"


async def test_program_save_checks_then_writes_the_users_folder(
    web: tuple[Daemon, WebClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, c = web
    # Without $MASSAGED_PROGRAMS_DIR: programs/ in the configuration folder, made on the first save.
    monkeypatch.delenv("MASSAGED_PROGRAMS_DIR", raising=False)
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(tmp_path / "config"))
    status, answer = await c.command("program_save", {"name": "my-neck", "text": GOOD_PROGRAM})
    assert status == 200, answer
    assert Path(answer["data"]["path"]) == tmp_path / "config" / "programs" / "my-neck.toml"
    folder = tmp_path / "programs"
    monkeypatch.setenv("MASSAGED_PROGRAMS_DIR", str(folder))
    for body, word in (
        ({"name": "collar-zone", "text": GOOD_PROGRAM}, "built-in"),
        ({"name": "other", "text": GOOD_PROGRAM}, "must match"),
        ({"name": "my-neck", "text": GOOD_PROGRAM.replace("= 3", "= 300")}, "line 10"),
        ({"name": "My Neck", "text": GOOD_PROGRAM}, "not a program id"),
    ):
        status, answer = await c.command("program_save", body)
        assert status in (400, 409), answer
        assert word in answer["error"], answer
        assert not list(folder.glob("*")) if folder.exists() else True
    status, answer = await c.command("program_save", {"name": "my-neck", "text": GOOD_PROGRAM})
    assert status == 200, answer
    assert (folder / "my-neck.toml").read_text() == GOOD_PROGRAM
    assert sorted(p.name for p in folder.iterdir()) == ["my-neck.toml"]
    status, answer = await c.command("program", {"name": "my-neck"})
    assert status == 200
    assert answer["data"]["builtin"] is False


async def test_pulse_refuses_what_it_cannot_reach(web: tuple[Daemon, WebClient]) -> None:
    _, c = web
    status, answer = await c.command("pulse", {"name": "belt"})
    assert status == 409
    assert answer["error"] == "no paired device 'belt'"


async def test_the_status_carries_the_page_address_and_no_session(
    web: tuple[Daemon, WebClient],
) -> None:
    _, c = web
    data = (await c.command("status"))[1]["data"]
    assert data["now"] is None
    assert data["session"] is None


async def test_the_new_commands_reach_the_control_socket_too(tmp_path: Path) -> None:
    from controller.control import ControlServer, call

    async with bare_daemon(tmp_path) as daemon:
        server = ControlServer(daemon, tmp_path / "c.sock")
        await server.start()
        try:
            answer = await call(tmp_path / "c.sock", "course", {})
            assert answer["status"] == "ok"
            assert answer["data"]["course_sessions"] == 15
            answer = await call(tmp_path / "c.sock", "program_check", {"text": "x ="})
            assert answer["data"]["valid"] is False
        finally:
            await server.close()


async def test_the_web_server_is_not_a_test_of_the_page_itself(
    tmp_path: Path,
) -> None:
    # Without the front end's files the API still works and / says what is missing.
    empty = tmp_path / "static"
    empty.mkdir()
    async with bare_daemon(tmp_path) as daemon:
        server = WebServer(daemon, _settings(), state_dir=tmp_path, static_dir=empty)
        await server.start()
        try:
            async with client(server) as c:
                async with c.session.get(c.base) as r:
                    assert r.status == 503
                    assert "not installed" in await r.text()
                assert (await c.command("status"))[0] == 200
        finally:
            await server.close()


def _settings() -> WebSettings:
    return WebSettings(port=0)
