"""The classic sequences as written, and `programs show`'s counts, read back from recordings."""

from __future__ import annotations

import itertools
import re

import pytest

from controller.cli import main
from programs.library import get
from programs.model import StepSide, Technique
from programs.movements import Movement, movements
from tests.method.recorded import Recorded, recorded

# One worker plays each recording once for both files (recorded() keeps them per process).
pytestmark = pytest.mark.xdist_group("method-recordings")

NECK_LEFT, NECK_RIGHT = "motor1", "motor2"
BY_ZONE = {"neck": ("motor1", "motor2"), "shoulders": ("motor3", "motor4")}
BY_ZONE["upper_back"] = ("motor5", "motor6")


def moves(rec: Recorded, channel: str, start: float, end: float) -> list[Movement]:
    """The belt movements on a channel that start in [start, end)."""
    found = movements(rec.series("belt", channel), end=rec.plan.duration + 5)
    return [m for m in found if start - 1e-6 <= m.start < end - 1e-6]


def test_collar_zone_show_prints_the_method_counts_and_the_recording_agrees(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["programs", "show", "collar-zone"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^\d+\s+\d+:\d\d", line)]
    names = r"strokes?|rubs?|press(?:es)?|kneadings?|circles?|bursts?|tapping series"
    shown = []
    for line in rows:
        found = re.search(rf"\b(\d+) ({names})\b", line)
        assert found is not None, line
        shown.append((line.split()[0], int(found.group(1))))
    for expected in (
        "7 strokes × 5 s (method 7)",
        "7 rubs × 6 s (method 7)",
        "6 kneadings × 10 s (method 5–7)",
        "8 rubs × 6 s (method 5–10)",
        "6 circles × 8 s (method 5–7)",
        "12 s: 1 burst",
        "6 strokes × 5 s (method 5–7)",
    ):
        assert expected in out
    program = get("collar-zone").program
    assert len(shown) == len(program.steps)
    rec = recorded("collar-zone", "adult")
    for (number, count), span, step in zip(shown, rec.plan.steps, program.steps, strict=True):
        assert int(number) == span.index + 1
        motors = BY_ZONE.get(step.zone.value, ("motor1", "motor2", "motor3", "motor4"))
        for motor in motors:
            assert len(moves(rec, motor, span.start, span.end)) == count, (number, motor)


def peaks(found: list[Movement]) -> list[float]:
    return [m.peak for m in found]


@pytest.mark.parametrize(
    ("profile", "healthy", "painful"),
    [("pain-left", NECK_RIGHT, NECK_LEFT), ("adult", NECK_LEFT, NECK_RIGHT)],
)
def test_one_sided_pain_starts_healthy_and_moves_across_once_smoothly(
    profile: str, healthy: str, painful: str
) -> None:
    program = get("cervical-osteochondrosis").program
    rec = recorded("cervical-osteochondrosis", profile)
    steps = list(zip(rec.plan.steps, program.steps, strict=True))
    groups = [
        steps[i : i + 3]
        for i in range(len(steps) - 2)
        if [s.side for _, s in steps[i : i + 3]]
        == [StepSide.HEALTHY, StepSide.TO_PAINFUL, StepSide.PAINFUL]
    ]
    assert len(groups) == 3  # stroking, pressing, kneading: each its own transition
    for (h_span, _), (t_span, move), (p_span, _) in groups:
        # the healthy side first, the painful side untouched until the transition
        assert moves(rec, healthy, h_span.start, h_span.end)
        assert not moves(rec, painful, h_span.start, h_span.end)
        # one smooth move: every movement on both sides, the weight crossing in steps
        on_healthy = peaks(moves(rec, healthy, t_span.start, t_span.end))
        on_painful = peaks(moves(rec, painful, t_span.start, t_span.end))
        assert len(on_healthy) == len(on_painful) == move.movement_count >= 3
        assert all(a >= b for a, b in itertools.pairwise(on_healthy))
        assert all(a <= b for a, b in itertools.pairwise(on_painful))
        assert on_healthy[0] > on_painful[0]
        assert on_healthy[-1] < on_painful[-1]
        # then the painful side alone
        assert moves(rec, painful, p_span.start, p_span.end)
        assert not moves(rec, healthy, p_span.start, p_span.end)


def test_classic_three_stage_stage_2_travels_down_and_back_with_force_rising() -> None:
    program = get("classic-three-stage").program
    rec = recorded("classic-three-stage", "adult")
    stage2 = [(span, s) for span, s in zip(rec.plan.steps, program.steps, strict=True)]
    stage2 = [(span, s) for span, s in stage2 if s.label.startswith("2:")]
    where: list[str] = []
    rising: list[float] = []
    for span, _ in stage2:
        active = [
            zone
            for zone, motors in BY_ZONE.items()
            if any(moves(rec, m, span.start, span.end) for m in motors)
        ]
        assert len(active) == 1, active  # one place at a time, along the belt
        where.append(active[0])
        rising += peaks(moves(rec, BY_ZONE[active[0]][0], span.start, span.end))
    assert where == ["neck", "shoulders", "upper_back", "shoulders", "neck"]
    assert all(a <= b for a, b in itertools.pairwise(rising))
    assert rising[-1] > rising[0]


def test_classic_three_stage_stage_3_only_falls_and_ends_with_palm_rubbing() -> None:
    program = get("classic-three-stage").program
    rec = recorded("classic-three-stage", "adult")
    spans = [(span, s) for span, s in zip(rec.plan.steps, program.steps, strict=True)]
    stage2_top = max(
        m.peak
        for span, s in spans
        if s.label.startswith("2:")
        for motor in ("motor1", "motor3", "motor5")
        for m in moves(rec, motor, span.start, span.end)
    )
    stage3 = [(span, s) for span, s in spans if s.label.startswith("3:")]
    for motor in ("motor1", "motor2", "motor3", "motor4", "motor5", "motor6"):
        falling = peaks(moves(rec, motor, stage3[0][0].start, stage3[-1][0].end))
        assert falling[0] <= stage2_top
        assert all(a >= b for a, b in itertools.pairwise(falling)), motor
    last_span, last = stage3[-1]
    assert last.technique is Technique.RUBBING
    assert last_span.end == rec.plan.duration
