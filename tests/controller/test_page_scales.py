"""What 100 % of a device means on the web page: from its capabilities, else the protocol."""

from __future__ import annotations

import pytest

from controller.daemon_pages import normalized
from devices.capabilities import Capabilities, DeviceKind, belt_motors
from devices.kinds import kind_spec
from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_a_previewed_device_is_full_at_its_kinds_maximum(kind: DeviceKind) -> None:
    assert kind_spec(kind).preview.full_scale == kind_spec(kind).maximum


def test_a_device_is_full_at_what_it_reports() -> None:
    kneading = kind_spec(DeviceKind.PILLOW).preview.kneading
    assert kneading is not None
    slow = kneading.model_copy(update={"max_speed": 2})
    assert Capabilities(kind=DeviceKind.PILLOW, model="SP1", kneading=slow).full_scale == 2
    motors = tuple(m.model_copy(update={"max_level": 100}) for m in belt_motors(4))
    assert Capabilities(kind=DeviceKind.BELT, model="VB1", motors=motors).full_scale == 100
    # Nothing reported: the protocol's maximum of the kind.
    bare = Capabilities(kind=DeviceKind.BUTTERFLY, model="EB1")
    assert bare.full_scale == ButterflyOutput.maximum


def test_levels_without_capabilities_are_fractions_of_the_protocols_maxima() -> None:
    shown = normalized(
        {
            "motor1": 51,
            "speed": 1,
            "direction": "clockwise",
            "heater": 1,
            "strength_a": 100,
            "intensity_a": 50,
            "strength_b": 400,
        },
        None,
    )
    assert shown == {
        "motor1": round(51 / BeltOutput.maximum, 4),
        "speed": round(1 / PillowOutput.maximum, 4),
        "heater": 1.0,
        "output_a": round(50 / ButterflyOutput.maximum, 4),
        "output_b": 1.0,  # never past full
    }


def test_levels_are_fractions_of_what_the_device_reports() -> None:
    channels = tuple(c.model_copy(update={"max_strength": 100}) for c in _butterfly().ems_channels)
    caps = Capabilities(kind=DeviceKind.BUTTERFLY, model="EB1", ems_channels=channels)
    assert normalized({"strength_a": 50, "intensity_a": 100, "strength_b": 0}, caps) == {
        "output_a": 0.5,
        "output_b": 0.0,
    }


def _butterfly() -> Capabilities:
    return kind_spec(DeviceKind.BUTTERFLY).preview


def test_an_unknown_channel_counts_as_nothing() -> None:
    assert normalized({"motor9": 10}, None)["motor9"] == round(10 / BeltOutput.maximum, 4)
    assert normalized({"strength_c": 10}, None) == {"output_c": 0.0}
