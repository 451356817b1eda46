"""Program files are typed strictly and have sane minimums (issue 13).

TOML has booleans, whole numbers, floats and strings apart; pydantic's lax mode
would read ``intensity = true`` as 1.0 (full power) and ``"0.5"`` as 0.5, and
``duration_s = 1e-300`` passed ``> 0``. Each is now refused with its field named.
"""

from __future__ import annotations

import pytest

from programs.errors import ProgramError
from programs.loader import parse_program

HEADER = """\
id = "typed"
title = "Typed"
audience = "adult"
max_duration = {max_duration}
description = "x"
cites = "y"

[[steps]]
technique = "stroking"
"""


def error_of(step: str, *, max_duration: str = "10") -> str:
    with pytest.raises(ProgramError) as info:
        parse_program(HEADER.format(max_duration=max_duration) + step, source="typed.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("duration_s = 60\nintensity = true\n", "intensity: true is not a number"),
        ('duration_s = 60\nintensity = "0.5"\n', "intensity: '0.5' is not a number"),
        (
            "duration_s = 60\nstart_intensity = false\nend_intensity = 0.5\n",
            "start_intensity: false is not a number",
        ),
        ("repetitions = 3.0\nintensity = 0.5\n", "repetitions: 3 is not a whole number"),
        ("repetitions = true\nintensity = 0.5\n", "repetitions: true is not a whole number"),
        ("duration_s = 60\nintensity = 0.5\nheat = 1\n", "heat: 1 is not true or false"),
        ("duration_s = 1e-300\nintensity = 0.5\n", "duration_s: 1e-300 is less than 1"),
        ("duration_s = 0.5\nintensity = 0.5\n", "duration_s: 0.5 is less than 1"),
    ],
)
def test_a_step_field_of_the_wrong_type_or_too_small_is_refused(step: str, expected: str) -> None:
    assert f"typed.toml: step 1 (stroking): {expected}" in error_of(step)


def test_max_duration_is_at_least_a_minute() -> None:
    message = error_of("duration_s = 1\nintensity = 0.5\n", max_duration="0.001")
    assert "typed.toml: max_duration: 0.001 is less than 1" in message


def test_max_duration_is_a_number_not_a_flag() -> None:
    message = error_of("duration_s = 1\nintensity = 0.5\n", max_duration="true")
    assert "typed.toml: max_duration: true is not a number" in message
