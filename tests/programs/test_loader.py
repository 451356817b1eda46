"""Program files: broken ones are rejected with the file, the step and the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.errors import ConfigError
from programs.errors import ProgramError
from programs.loader import SCHEMA_PATH, load_program, parse_program, schema_text
from programs.model import Program, program_schema

HEADER = """\
id = "my-neck"
title = "My neck"
audience = "{audience}"
max_duration = {max_duration}
description = "A test program."
cites = "Perform 7 strokes between the head and shoulders"
"""

STROKES = """
[[steps]]
technique = "stroking"
repetitions = 7
intensity = 0.3
"""


def program_text(*steps: str, audience: str = "adult", max_duration: float = 30) -> str:
    head = HEADER.format(audience=audience, max_duration=max_duration)
    return head + "".join(steps)


def write(tmp_path: Path, text: str, name: str = "my-neck.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, name: str = "collar-zone.toml") -> ProgramError:
    with pytest.raises(ProgramError) as info:
        load_program(write(tmp_path, text, name))
    return info.value


def test_a_good_file_loads(tmp_path: Path) -> None:
    ramp = '\n[[steps]]\ntechnique = "pressing"\nduration_s = 30\n'
    ramp += "start_intensity = 0.3\nend_intensity = 0.6\n"
    p = load_program(write(tmp_path, program_text(STROKES, ramp)))
    assert isinstance(p, Program)
    assert p.total_duration == 7 * 5 + 30
    assert p.steps[1].intensity_at(0.5) == pytest.approx(0.45)


def test_vibration_longer_than_15_s_names_file_step_and_field(tmp_path: Path) -> None:
    vibration = '\n[[steps]]\ntechnique = "vibration"\nduration_s = 20\nintensity = 0.5\n'
    err = error_of(tmp_path, program_text(STROKES, STROKES, vibration))
    assert isinstance(err, ConfigError)
    assert str(err).endswith(
        "collar-zone.toml: step 3 (vibration): duration_s: "
        "20 is more than the method's 15 s for vibration"
    )
    (issue,) = err.issues
    assert (issue.step, issue.technique, issue.field) == (2, "vibration", "duration_s")


def test_vibration_by_repetitions_counts_too(tmp_path: Path) -> None:
    vibration = '\n[[steps]]\ntechnique = "vibration"\nrepetitions = 4\nintensity = 0.5\n'
    err = error_of(tmp_path, program_text(vibration))
    assert "step 1 (vibration): repetitions: 4 × 5 s = 20 s is more than the method's 15 s" in str(
        err
    )


def test_misspelt_technique_lists_the_valid_ones(tmp_path: Path) -> None:
    bad = '\n[[steps]]\ntechnique = "kneeding"\nrepetitions = 5\nintensity = 0.5\n'
    err = error_of(tmp_path, program_text(STROKES, STROKES, bad))
    assert str(err).endswith(
        "/collar-zone.toml: step 3: technique: 'kneeding' is not one of stroking, rubbing, "
        "pressing, kneading, circular, vibration, tapping, rest (did you mean 'kneading'?)"
    )


@pytest.mark.parametrize("value", ["[]", "[1, 2]", "{ a = 1 }"])
def test_a_technique_that_is_not_text_is_reported_not_raised(tmp_path: Path, value: str) -> None:
    # It crashed the error report (TypeError: unhashable type), found by test_fuzz.py.
    err = error_of(tmp_path, program_text(f"\n[[steps]]\ntechnique = {value}\nrepetitions = 5\n"))
    (issue,) = err.issues
    assert (issue.step, issue.technique, issue.field) == (0, None, "technique")
    assert "is not one of stroking, rubbing" in issue.message


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            'technique = "stroking"\nrepetitions = 5\nintensity = 1.5',
            "step 1 (stroking): intensity: 1.5 is more than 1 (intensities run from 0 to 1)",
        ),
        (
            'technique = "stroking"\nrepetitions = 5\nintensity = 0.5\nduraton_s = 3',
            "step 1 (stroking): duraton_s: unknown field; did you mean 'duration_s'?",
        ),
        (
            'technique = "stroking"\nrepetitions = 5\nduration_s = 30\nintensity = 0.5',
            "step 1 (stroking): repetitions: give repetitions or duration_s, not both",
        ),
        (
            'technique = "stroking"\nintensity = 0.5',
            "step 1 (stroking): duration_s: give either repetitions (a count) or duration_s",
        ),
        (
            'technique = "stroking"\nrepetitions = 5',
            "step 1 (stroking): intensity: missing: give intensity (0..1), or start_intensity",
        ),
        (
            'technique = "stroking"\nrepetitions = 5\nstart_intensity = 0.2',
            "step 1 (stroking): end_intensity: missing",
        ),
        (
            'technique = "pressing"\nrepetitions = 5\nstart_intensity = 0.6\nend_intensity = 0.2',
            "step 1 (pressing): end_intensity: 0.2 is below start_intensity 0.6; pressing means "
            "pressing with gradually increasing force",
        ),
        (
            'technique = "rest"\nduration_s = 5\nintensity = 0.4',
            "step 1 (rest): intensity: a rest plays nothing",
        ),
        (
            'technique = "rest"\nduration_s = 5\nheat = true',
            "step 1 (rest): heat: a rest plays nothing",
        ),
        (
            'technique = "kneading"\nzone = "upper_back"\nduration_s = 5\nintensity = 0.4\n'
            'devices = ["pillow"]',
            "step 1 (kneading): devices: the pillow only reaches the neck",
        ),
        (
            'technique = "kneading"\nduration_s = 5\nintensity = 0.4\ndevices = ["pilow"]',
            "step 1 (kneading): devices: 'pilow' is not one of belt, pillow, butterfly",
        ),
        (
            'technique = "kneading"\nduration_s = 5\nintensity = 0.4\nside = "front"',
            "step 1 (kneading): side: 'front' is not one of left, right, both, painful, healthy",
        ),
        (
            'technique = "kneading"\nzone = "throat"\nduration_s = 5\nintensity = 0.4',
            "step 1 (kneading): zone: 'throat' is not one of neck, shoulders, upper_back, "
            "collar_zone",
        ),
        (
            'technique = "kneading"\nrepetitions = "five"\nintensity = 0.4',
            "step 1 (kneading): repetitions: 'five' is not a whole number",
        ),
    ],
)
def test_bad_step_fields(tmp_path: Path, step: str, expected: str) -> None:
    err = error_of(tmp_path, program_text(f"\n[[steps]]\n{step}\n"))
    assert f"collar-zone.toml: {expected}" in str(err)
    assert len(str(err).splitlines()) == 1  # no echo errors from pydantic


def test_steps_must_fit_max_duration(tmp_path: Path) -> None:
    long = '\n[[steps]]\ntechnique = "kneading"\nduration_s = 400\nintensity = 0.4\n'
    err = error_of(tmp_path, program_text(long, long, max_duration=10))
    assert "collar-zone.toml: max_duration: the steps take 13.33 min (800 s), more than " in str(
        err
    )


@pytest.mark.parametrize(
    ("audience", "max_duration", "expected"),
    [
        ("child", 20, "max_duration: 20 min is more than the method's 15 min for children"),
        ("adult", 45, "max_duration: 45 is more than 30 (minutes; the method allows up to 30"),
        ("teen", 10, "audience: 'teen' is not one of adult, child"),
    ],
)
def test_session_limits(tmp_path: Path, audience: str, max_duration: float, expected: str) -> None:
    err = error_of(tmp_path, program_text(STROKES, audience=audience, max_duration=max_duration))
    assert f"collar-zone.toml: {expected}" in str(err)


def test_child_programs_are_gentler(tmp_path: Path) -> None:
    firm = '\n[[steps]]\ntechnique = "kneading"\nduration_s = 60\nintensity = 0.8\n'
    err = error_of(tmp_path, program_text(STROKES, firm, audience="child", max_duration=15))
    assert "step 2 (kneading): intensity: 0.8 is more than 0.6, the most a child program" in str(
        err
    )


def test_program_level_fields(tmp_path: Path) -> None:
    text = program_text(STROKES).replace('id = "my-neck"', 'id = "My Neck"')
    text = text.replace('title = "My neck"\n', "") + 'colour = "red"\n'
    message = str(error_of(tmp_path, text))
    assert "collar-zone.toml: id: 'My Neck' is not a slug" in message
    assert "collar-zone.toml: title: missing: this field is required" in message


def test_no_steps(tmp_path: Path) -> None:
    err = error_of(tmp_path, program_text() + "steps = []\n")
    assert "steps: a program needs at least one [[steps]] table" in str(err)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = program_text(STROKES) + '\n[[steps]\ntechnique = "rubbing"\n'
    err = error_of(tmp_path, text)
    line = text.splitlines().index("[[steps]") + 1
    assert f"/collar-zone.toml: line {line}: not valid TOML: Expected ']]'" in str(err)
    assert err.issues[0].line == line


def test_toml_error_at_the_end_of_the_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, "id = ")
    assert "/collar-zone.toml: line 1: not valid TOML" in str(err)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match=r"missing\.toml: cannot read"):
        load_program(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b'title = "\xe9"\n')
    with pytest.raises(ProgramError, match=r"latin1\.toml: not UTF-8"):
        load_program(tmp_path / "latin1.toml")


def test_parse_program_names_the_source() -> None:
    with pytest.raises(ProgramError, match=r"^inline: audience: missing"):
        parse_program(program_text(STROKES).replace('audience = "adult"\n', ""), source="inline")


def test_published_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "regenerate it: massaged programs schema > programs/schema.json"
    )
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema == program_schema()
    step = schema["$defs"]["Step"]
    assert step["additionalProperties"] is False
    assert {"required": ["duration_s"]} in step["oneOf"]
    assert schema["$defs"]["Zone"]["enum"] == ["neck", "shoulders", "upper_back", "collar_zone"]
