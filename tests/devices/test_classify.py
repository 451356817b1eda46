"""The models table: classification of advertisements by name first, then by service."""

from __future__ import annotations

import pytest

from devices.capabilities import DeviceKind
from devices.errors import ConfigError
from devices.kinds import KINDS, MODELS, classify, kind_spec, model_spec, models_of, off_output
from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput
from devices.protocols import eb1, sp1, vb1


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("VB1-0042", "VB1"),
        ("SP1-0001", "SP1"),
        ("EB1-7", "EB1"),
        # A real DG-LAB Coyote V3 (the EB1 protocol) advertises this name and no service.
        ("47L121000", "EB1"),
        ("47L12ABCD", "EB1"),
    ],
)
def test_a_name_alone_is_enough(name: str, model: str) -> None:
    spec = classify(name, [])
    assert spec is not None
    assert spec.model == model
    assert spec.kind is MODELS[model].kind


@pytest.mark.parametrize("name", ["D-LAB ESTIM01", "DG-LAB ESTIM01"])
def test_a_coyote_v2_is_found_by_its_name(name: str) -> None:
    spec = classify(name, [])
    assert spec is MODELS["Coyote V2"]
    assert spec.kind is DeviceKind.BUTTERFLY


def test_the_name_wins_over_the_service() -> None:
    # A belt's name with the butterfly's service: the name says what it is.
    assert classify("VB1-1", [eb1.SERVICE_UUID]) is MODELS["VB1"]


@pytest.mark.parametrize(
    ("uuid", "model"),
    [
        (vb1.NUS_SERVICE, "VB1"),
        (sp1.SERVICE_UUID.upper(), "SP1"),
        (eb1.SERVICE_UUID, "EB1"),
        ("180c", "EB1"),  # the 16-bit short form of the EB1's service
    ],
)
def test_without_a_known_name_the_service_decides(uuid: str, model: str) -> None:
    assert classify("Unnamed", [uuid]) is MODELS[model]
    assert classify(None, ["180f", uuid]) is MODELS[model]


@pytest.mark.parametrize(
    ("name", "uuids"),
    [
        ("Headphones", ["180f"]),
        (None, []),
        ("", []),
        # Device Information (0x180A, also the EB1's battery service) is advertised by
        # many devices: it must not make one a butterfly.
        ("Thermometer", ["180a"]),
        ("47L1", []),  # too short for the Coyote V3 prefix
        ("xD-LAB", []),  # a prefix, not a substring
    ],
)
def test_anything_else_is_not_ours(name: str | None, uuids: list[str]) -> None:
    assert classify(name, uuids) is None


def test_every_kind_has_its_maximum_once_in_its_output_and_table() -> None:
    assert KINDS[DeviceKind.BELT].maximum == vb1.MAX_LEVEL == BeltOutput.maximum
    assert KINDS[DeviceKind.PILLOW].maximum == sp1.MAX_SPEED == PillowOutput.maximum
    assert KINDS[DeviceKind.BUTTERFLY].maximum == eb1.MAX_STRENGTH == ButterflyOutput.maximum
    assert [s.kind for s in KINDS.values() if s.ems] == [DeviceKind.BUTTERFLY]


def test_model_lookup_and_defaults() -> None:
    assert model_spec("", "belt") is MODELS["VB1"]
    assert model_spec("EB1", DeviceKind.BUTTERFLY) is MODELS["EB1"]
    assert next(models_of("butterfly")) is MODELS["EB1"]
    assert all(m.kind is DeviceKind.BUTTERFLY for m in models_of("butterfly"))
    with pytest.raises(ConfigError, match="is a belt, not a pillow"):
        model_spec("VB1", "pillow")
    # A model as its driver reports it, as the registry records it.
    assert model_spec("VB1-6", "belt") is MODELS["VB1"]
    assert model_spec("SP1-01") is MODELS["SP1"]
    assert model_spec("coyotev2", "butterfly") is model_spec("CoyoteV2") is MODELS["Coyote V2"]
    with pytest.raises(ConfigError, match="'Toaster' is not one of"):
        model_spec("Toaster")
    with pytest.raises(ConfigError, match="'VB10' is not one of"):
        model_spec("VB10")
    with pytest.raises(ConfigError, match="kind 'kettle'"):
        kind_spec("kettle")


def test_off_is_shaped_like_the_device() -> None:
    belt = KINDS[DeviceKind.BELT].preview
    assert off_output(belt) == BeltOutput.off(len(belt.motors))
    assert off_output(KINDS[DeviceKind.PILLOW].preview) == PillowOutput()
    assert off_output(KINDS[DeviceKind.BUTTERFLY].preview) == ButterflyOutput()
    assert BeltOutput((4, 5, 6, 7), heat=True).off_like() == BeltOutput((0, 0, 0, 0))
