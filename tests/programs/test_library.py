"""The built-in programs: each validates and mirrors its part of the method."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from devices.capabilities import DeviceKind
from programs.errors import ProgramError
from programs.library import LIBRARY_DIR, builtin_ids, get, list_programs, resolve, user_dir
from programs.model import (
    CHILD_MAX_INTENSITY,
    MAX_SESSION_MIN,
    MAX_VIBRATION_S,
    Audience,
    Program,
    StepSide,
    Technique,
    Zone,
)
from programs.render import render
from programs.render_pillow import AUTO_OFF_S

EXPECTED = {
    "collar-zone",
    "collar-zone-child",
    "classic-three-stage",
    "cervical-osteochondrosis",
    "self-massage",
    "office-weekly",
    "evening-pillow",
    "classic-manual",
}


def program(program_id: str) -> Program:
    return get(program_id).program


def test_the_library_has_every_expected_program() -> None:
    assert set(builtin_ids()) == EXPECTED


@pytest.mark.parametrize("program_id", sorted(EXPECTED))
def test_builtin_is_valid_and_within_the_method_limits(program_id: str) -> None:
    source = get(program_id)
    p = source.program
    assert source.builtin
    assert p.id == source.path.stem == program_id
    assert p.cites.strip()
    assert p.description.strip()
    assert p.total_duration <= p.max_duration * 60 <= MAX_SESSION_MIN[p.audience] * 60
    for step in p.steps:
        if step.technique is Technique.VIBRATION:
            assert step.duration <= MAX_VIBRATION_S
    if p.audience is Audience.CHILD:
        assert all(s.peak_intensity <= CHILD_MAX_INTENSITY for s in p.steps)


def test_collar_zone_follows_the_method_counts() -> None:
    p = program("collar-zone")
    s = p.steps
    assert [x.technique for x in s] == [
        Technique.STROKING,
        Technique.RUBBING,
        Technique.PRESSING,
        Technique.KNEADING,
        Technique.RUBBING,
        Technique.CIRCULAR,
        Technique.VIBRATION,
        Technique.STROKING,
    ]
    assert s[0].repetitions == 7  # 7 strokes between the head and shoulders
    assert s[1].repetitions == 7  # 7 rubs
    assert s[2].start_intensity is not None
    assert s[2].end_intensity is not None
    assert s[2].start_intensity < s[2].end_intensity  # gradually increasing pressure
    assert s[3].repetitions is not None
    assert 5 <= s[3].repetitions <= 7
    assert s[4].zone is Zone.SHOULDERS  # the trapezius with the whole palm
    assert s[4].repetitions is not None
    assert 5 <= s[4].repetitions <= 10
    assert s[5].zone is Zone.SHOULDERS
    assert s[5].repetitions is not None
    assert 5 <= s[5].repetitions <= 7  # light circles on the shoulder joints
    assert s[5].peak_intensity <= 0.4  # light
    assert s[6].duration <= 15  # vibration up to 15 s
    assert s[7].zone is Zone.COLLAR_ZONE
    assert s[7].repetitions is not None
    assert 5 <= s[7].repetitions <= 7  # stroking the entire collar area
    assert p.audience is Audience.ADULT
    assert p.total_duration <= 30 * 60


def test_collar_zone_child_is_the_same_method_gentler_and_shorter() -> None:
    adult, child = program("collar-zone"), program("collar-zone-child")
    assert child.audience is Audience.CHILD
    assert child.max_duration <= 15
    assert child.total_duration <= 15 * 60
    assert [s.technique for s in child.steps] == [s.technique for s in adult.steps]
    assert [s.zone for s in child.steps] == [s.zone for s in adult.steps]
    assert child.steps[0].repetitions == 7
    assert child.steps[1].repetitions == 7
    for kid, grown in zip(child.steps, adult.steps, strict=True):
        assert kid.peak_intensity < grown.peak_intensity
        assert kid.duration <= grown.duration
        assert kid.devices is not None
        assert DeviceKind.BUTTERFLY not in kid.devices


def test_classic_three_stage_goes_down_then_back_up_then_fades() -> None:
    s = program("classic-three-stage").steps
    stage1 = [x for x in s if x.label.startswith("1:")]
    zones = [x.zone for x in stage1]
    down = [Zone.NECK, Zone.NECK, Zone.SHOULDERS, Zone.SHOULDERS, Zone.UPPER_BACK, Zone.UPPER_BACK]
    assert zones == down + down[::-1]
    assert {x.technique for x in stage1} == {Technique.RUBBING, Technique.CIRCULAR}
    # Stage 2: top to bottom and back along the belt, the force rising all the way.
    stage2 = [x for x in s if x.label.startswith("2:")]
    assert [x.zone for x in stage2] == [
        Zone.NECK,
        Zone.SHOULDERS,
        Zone.UPPER_BACK,
        Zone.SHOULDERS,
        Zone.NECK,
    ]
    ramps = [(x.intensity_at(0), x.intensity_at(1)) for x in stage2]
    assert all(a < b for a, b in ramps)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(ramps))
    # Stage 3: the force only falls, from below stage 2's peak, and ends with the palms.
    stage3 = [x for x in s if x.label.startswith("3:")]
    ramps = [(x.intensity_at(0), x.intensity_at(1)) for x in stage3]
    assert ramps[0][0] <= stage2[-1].intensity_at(1)
    assert all(a > b for a, b in ramps)
    assert all(prev[1] >= nxt[0] for prev, nxt in itertools.pairwise(ramps))
    assert s[-1].technique is Technique.RUBBING  # ends with rubbing with the palms


def test_classic_manual_follows_the_method_order() -> None:
    s = program("classic-manual").steps
    order = [x.technique for x in s]
    # superficial (stroking, circles, rubbing), deep pressing, the neck, kneading,
    # pats, taps and vibration, ending with stroking
    assert order == [
        Technique.STROKING,
        Technique.CIRCULAR,
        Technique.RUBBING,
        Technique.PRESSING,
        Technique.STROKING,
        Technique.RUBBING,
        Technique.KNEADING,
        Technique.TAPPING,
        Technique.TAPPING,
        Technique.VIBRATION,
        Technique.STROKING,
    ]
    assert s[3].zone is Zone.UPPER_BACK  # along the transverse processes, not the neck
    assert s[4].zone is s[5].zone is Zone.NECK
    assert s[3].intensity_at(1) > s[3].intensity_at(0)
    assert s[6].peak_intensity == max(x.peak_intensity for x in s)  # strong kneading
    assert s[-1].intensity_at(1) < s[-1].intensity_at(0)


def test_cervical_osteochondrosis_starts_on_the_healthy_side() -> None:
    s = program("cervical-osteochondrosis").steps
    one_sided = (StepSide.HEALTHY, StepSide.TO_PAINFUL, StepSide.PAINFUL)
    sided = [(x.technique, x.side) for x in s if x.side in one_sided]
    for technique in {t for t, _ in sided}:
        sides = [side for t, side in sided if t is technique]
        # healthy first, one smooth transition, then the painful side
        assert sides == list(one_sided)
    order = [x.technique for x in s]
    assert order.index(Technique.STROKING) < order.index(Technique.PRESSING)
    warming = [i for i, x in enumerate(s) if x.heat]
    assert warming
    assert order.index(Technique.PRESSING) < warming[0] < order.index(Technique.KNEADING)
    assert s[-1].intensity_at(1) < s[-1].intensity_at(0)  # relaxation
    for healthy, move, painful in zip(s, s[1:], s[2:], strict=False):
        if (healthy.side, move.side, painful.side) == one_sided:
            assert painful.peak_intensity <= healthy.peak_intensity


def test_self_massage_is_ten_to_fifteen_minutes_of_light_work() -> None:
    p = program("self-massage")
    assert 10 * 60 <= p.total_duration <= 15 * 60
    assert p.frequency is not None
    assert "2-3" in p.frequency
    techniques = [s.technique for s in p.steps]
    assert techniques[:3] == [Technique.STROKING, Technique.RUBBING, Technique.TAPPING]
    assert p.steps[0].peak_intensity <= 0.35
    assert p.steps[2].peak_intensity <= 0.35


def test_office_weekly_is_weekly() -> None:
    p = program("office-weekly")
    assert p.frequency == "once a week"
    assert p.total_duration <= p.max_duration * 60


def test_evening_pillow_stays_under_the_pillow_auto_off() -> None:
    p = program("evening-pillow")
    assert all(s.devices == (DeviceKind.PILLOW,) and s.heat for s in p.steps)
    assert p.total_duration < AUTO_OFF_S
    cues = render(p).timelines["pillow"].cues
    assert all(not c.output.is_zero for c in cues[:-1])  # one continuous run, no pause needed
    assert cues[-1].output.is_zero
    assert cues[-1].t < AUTO_OFF_S


def test_user_directory_programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (LIBRARY_DIR / "office-weekly.toml").read_text()
    (tmp_path / "my-neck.toml").write_text(text.replace('"office-weekly"', '"my-neck"'))
    (tmp_path / "clash.toml").write_text(text.replace('"office-weekly"', '"clash"'))
    (tmp_path / "collar-zone.toml").write_text((LIBRARY_DIR / "collar-zone.toml").read_text())
    (tmp_path / "wrong-name.toml").write_text(text)
    (tmp_path / "broken.toml").write_text("id = ")
    monkeypatch.setenv("MASSAGED_PROGRAMS_DIR", str(tmp_path))
    assert get("my-neck").program.id == "my-neck"
    assert not get("my-neck").builtin
    assert get("collar-zone").builtin  # a built-in cannot be shadowed
    found, errors = list_programs()
    ids = [s.program.id for s in found]
    assert "my-neck" in ids
    assert "clash" in ids
    assert ids.count("collar-zone") == 1
    messages = "\n".join(str(e) for e in errors)
    assert "broken.toml: line 1" in messages
    assert "wrong-name.toml: id: 'office-weekly' does not match the file name" in messages
    assert "collar-zone.toml: id: 'collar-zone' is a built-in program's id" in messages
    with pytest.raises(ProgramError, match="does not match the file name"):
        get("wrong-name")


def test_unknown_program_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASSAGED_PROGRAMS_DIR", raising=False)
    expected = r"no program 'nope'.*collar-zone.*programs.*MASSAGED_PROGRAMS_DIR"
    with pytest.raises(ProgramError, match=expected):
        get("nope")


def test_the_default_program_folder_is_in_the_configuration_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from controller.paths import config_dir

    monkeypatch.delenv("MASSAGED_PROGRAMS_DIR", raising=False)
    for env in (
        {"MASSAGED_CONFIG_DIR": str(tmp_path / "c")},
        {"XDG_CONFIG_HOME": str(tmp_path / "x")},
        {"XDG_CONFIG_HOME": "relative/ignored"},
        {},
    ):
        monkeypatch.delenv("MASSAGED_CONFIG_DIR", raising=False)
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert user_dir() == config_dir() / "programs", env
    # The default folder, not made yet, is no programs of one's own (and no warning).
    found, errors = list_programs()
    assert all(source.builtin for source in found)
    assert not errors
    # A program saved there is found by its id.
    monkeypatch.setenv("MASSAGED_CONFIG_DIR", str(tmp_path / "c"))
    user_dir().mkdir(parents=True)
    text = (
        (LIBRARY_DIR / "self-massage.toml")
        .read_text()
        .replace('id = "self-massage"', 'id = "my-own"')
    )
    (user_dir() / "my-own.toml").write_text(text)
    assert not get("my-own").builtin


def test_resolve_takes_an_id_or_a_path() -> None:
    assert resolve("collar-zone").builtin
    by_path = resolve(str(LIBRARY_DIR / "self-massage.toml"))
    assert by_path.program.id == "self-massage"
    assert not by_path.builtin
