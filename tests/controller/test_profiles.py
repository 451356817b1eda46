"""Profiles: validation, contraindication logic, and the ``profiles`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from controller.commands import profiles as profiles_cmd
from controller.errors import StoreError
from controller.profiles import (
    CONTRAINDICATIONS,
    DEFAULT_PROFILE,
    Audience,
    Contraindication,
    KindCaps,
    PainfulSide,
    Profile,
    check_contraindications,
    parse_contraindication,
    parse_kind_caps,
    parse_profile,
)
from controller.store import Store
from devices.capabilities import DeviceKind
from devices.errors import ConfigError

ALL = frozenset(DeviceKind)
EMS_ONLY = {
    Contraindication.IMPLANTED_ELECTRONICS,
    Contraindication.PREGNANCY,
    Contraindication.EPILEPSY,
}


def test_default_profile() -> None:
    assert DEFAULT_PROFILE.name == "default"
    assert DEFAULT_PROFILE.audience == Audience.ADULT
    assert DEFAULT_PROFILE.caps == KindCaps(belt=0.8, pillow=1.0, butterfly=0.5)
    assert DEFAULT_PROFILE.ems_max_raise_per_100ms == 5
    assert DEFAULT_PROFILE.painful_side == PainfulSide.NONE
    assert not DEFAULT_PROFILE.contraindications


def test_every_contraindication_is_described_and_only_three_are_ems_only() -> None:
    assert set(CONTRAINDICATIONS) == set(Contraindication)
    assert {c for c, info in CONTRAINDICATIONS.items() if info.ems_only} == EMS_ONLY


def test_general_contraindication_blocks_the_whole_session() -> None:
    profile = Profile(name="p", contraindications=frozenset({Contraindication.FEVER}))
    result = check_contraindications(profile, ALL)
    assert result.blocked_kinds == ALL
    assert result.session_blocked
    assert not result.ok
    assert result.messages == [
        "fever: massage is contraindicated while you have a fever or high temperature "
        "(method: contraindications)"
    ]


@pytest.mark.parametrize("item", sorted(EMS_ONLY))
def test_ems_only_contraindication_blocks_only_the_butterfly(item: Contraindication) -> None:
    profile = Profile(name="p", contraindications=frozenset({item}))
    result = check_contraindications(profile, ALL)
    assert result.blocked_kinds == {DeviceKind.BUTTERFLY}
    assert result.allowed_kinds == {DeviceKind.BELT, DeviceKind.PILLOW}
    assert not result.session_blocked
    (message,) = result.messages
    assert message.startswith(f"{item.value}: ")
    assert "butterfly" in message
    # Without a butterfly in the session, nothing applies.
    assert check_contraindications(profile, {DeviceKind.BELT, DeviceKind.PILLOW}).ok


def test_butterfly_only_session_with_an_ems_item_is_blocked_entirely() -> None:
    profile = Profile(name="p", contraindications=frozenset({Contraindication.PREGNANCY}))
    assert check_contraindications(profile, {DeviceKind.BUTTERFLY}).session_blocked


@pytest.mark.parametrize("item", sorted(set(Contraindication) - EMS_ONLY))
def test_each_general_item_names_itself_and_blocks_all(item: Contraindication) -> None:
    profile = Profile(name="p", contraindications=frozenset({item, Contraindication.EPILEPSY}))
    result = check_contraindications(profile, {DeviceKind.BELT, DeviceKind.BUTTERFLY})
    assert result.blocked_kinds == {DeviceKind.BELT, DeviceKind.BUTTERFLY}
    general = next(f for f in result.findings if f.item == item)
    assert general.message.startswith(f"{item.value}: ")
    assert "(method:" in general.message
    assert general.blocks == {DeviceKind.BELT, DeviceKind.BUTTERFLY}


def test_no_contraindications_is_ok() -> None:
    result = check_contraindications(DEFAULT_PROFILE)
    assert result.ok
    assert result.kinds == ALL
    assert result.messages == []


def test_parse_contraindication_names_and_aliases() -> None:
    assert parse_contraindication("High temperature") == Contraindication.FEVER
    assert parse_contraindication("pacemaker") == Contraindication.IMPLANTED_ELECTRONICS
    assert parse_contraindication("intervertebral-hernia") == Contraindication.INTERVERTEBRAL_HERNIA
    assert parse_contraindication("hemophilia") == Contraindication.BLOOD_DISEASE
    with pytest.raises(ConfigError, match="unknown contraindication 'flu'"):
        parse_contraindication("flu")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "caps": {"belt": 1.5}}, "caps.belt"),
        ({"name": "x", "caps": {"butterfly": -0.1}}, "caps.butterfly"),
        ({"name": "x", "audience": "elder"}, "audience"),
        ({"name": "x", "ems_max_raise_per_100ms": 6}, "ems_max_raise_per_100ms"),
        ({"name": "x", "painful_side": "both"}, "painful_side"),
        ({"name": "x", "contraindications": ["flu"]}, "contraindications"),
        ({"name": "with space"}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_validation_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(data)
    assert field in str(info.value)


def test_json_round_trip_and_updated_validates() -> None:
    profile = Profile(
        name="anna",
        audience=Audience.CHILD,
        contraindications=frozenset({Contraindication.TUMOUR, Contraindication.DIABETES}),
    )
    data = json.loads(profile.to_json())
    assert data["contraindications"] == ["diabetes", "tumour"]
    assert parse_profile(profile.to_json()) == profile
    assert profile.updated(painful_side="left").painful_side == PainfulSide.LEFT
    with pytest.raises(ConfigError, match=r"caps\.pillow"):
        profile.updated(caps={"pillow": 2})


def test_parse_kind_caps() -> None:
    caps = parse_kind_caps(["belt=0.6", "BUTTERFLY = 0.25"])
    assert caps == KindCaps(belt=0.6, pillow=1.0, butterfly=0.25)
    with pytest.raises(ConfigError, match=r"caps\.belt"):
        parse_kind_caps(["belt=1.2"])
    with pytest.raises(ConfigError, match="KIND=FRACTION"):
        parse_kind_caps(["massager=0.5"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_kind_caps(["belt=lots"])


# -- the command --------------------------------------------------------------


def run(argv: list[str]) -> int:
    """Parse and run a ``profiles`` command on its own parser."""
    parser = argparse.ArgumentParser(prog="massaged")
    profiles_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_cli_set_show_check_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "m.db")
    with pytest.raises(StoreError, match="no database at"):  # a read command creates nothing
        run(["profiles", "list", "--db", db])
    assert not Path(db).exists()

    code = run(
        [
            "profiles", "set", "anna", "--db", db, "--audience", "child",
            "--cap", "belt=0.5", "--painful-side", "left",
            "--contraindication", "pacemaker",
        ]
    )  # fmt: skip
    assert code == 0
    assert "created profile anna" in capsys.readouterr().out
    with Store.open(db) as store:
        anna = store.get_profile("anna")
    assert anna.audience == Audience.CHILD
    assert anna.caps.belt == 0.5
    assert anna.caps.butterfly == 0.5  # untouched fields keep the defaults
    assert anna.contraindications == {Contraindication.IMPLANTED_ELECTRONICS}

    assert run(["profiles", "check", "anna", "--db", db]) == profiles_cmd.EXIT_BLOCKED
    out = capsys.readouterr().out
    assert "implanted_electronics:" in out
    assert "blocked: butterfly; may run: belt, pillow" in out
    assert run(["profiles", "check", "anna", "--device", "belt", "--db", db]) == 0

    assert run(["profiles", "set", "anna", "--contraindication", "fever", "--db", db]) == 0
    capsys.readouterr()
    assert run(["profiles", "check", "anna", "--db", db]) == profiles_cmd.EXIT_BLOCKED
    assert "the whole session is blocked" in capsys.readouterr().out

    assert run(["profiles", "set", "anna", "--clear-contraindications", "--db", db]) == 0
    assert run(["profiles", "list", "--db", db]) == 0
    assert "default" in capsys.readouterr().out
    assert run(["profiles", "show", "anna", "--json", "--db", db]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown[shown.index("{") :])["contraindications"] == []

    with pytest.raises(ConfigError, match=r"caps\.belt"):
        run(["profiles", "set", "anna", "--cap", "belt=3", "--db", db])
    with Store.open(db) as store:
        assert store.get_profile("anna").caps.belt == 0.5  # a refused change left it as it was
