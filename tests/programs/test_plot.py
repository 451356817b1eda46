"""Plots: a plan or a recording becomes a PNG; a missing matplotlib is a clear error."""

from __future__ import annotations

import functools
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.errors import ConfigError
from programs.errors import PlotError
from programs.library import get
from programs.plot import (
    TimeAxis,
    plan_figure,
    plan_panels,
    plot_plan,
    plot_recording,
    recording_figure,
    recording_panels,
)
from programs.render import render
from programs.timeline import SessionPlan

# Importing matplotlib costs a worker about a second of CPU: the tests that draw share one.
pytestmark = pytest.mark.xdist_group("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ROWS: list[dict[str, object]] = [
    {"t": 0.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0},
    {"t": 0.5, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 120},
    {"t": 0.5, "device": "belt-1", "kind": "belt", "channel": "heater", "value": 1},
    {"t": 1.0, "device": "pillow-1", "kind": "pillow", "channel": "speed", "value": 2},
    {"t": 1.0, "device": "pillow-1", "kind": "pillow", "channel": "direction", "value": "cw"},
    {"t": 1.2, "device": "eb1-1", "kind": "butterfly", "channel": "strength_a", "value": 20},
    {"t": 1.2, "device": "eb1-1", "kind": "butterfly", "channel": "output_a", "value": 10},
    {"t": 3.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0},
]


@functools.cache
def _plan(plan_id: str) -> SessionPlan:
    """A built-in's preview plan, rendered once for the module (no test changes a plan)."""
    return render(get(plan_id).program)


def test_plot_plan_writes_a_png(tmp_path: Path) -> None:
    plan = _plan("collar-zone")
    out = plot_plan(plan, tmp_path / "plan.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_a_missing_folder_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    plan = _plan("collar-zone")
    with pytest.raises(PlotError, match="does not exist"):
        plot_plan(plan, tmp_path / "no" / "such" / "plan.png")
    assert list(tmp_path.iterdir()) == []


def test_plan_panels_use_the_recording_channel_names() -> None:
    panels = {p.device: p for p in plan_panels(_plan("office-weekly"))}
    assert set(panels["belt"].series) == {f"motor{i}" for i in range(1, 7)} | {"heater"}
    assert set(panels["pillow"].series) == {"speed", "heater"}
    # The recording's names (docs/simulator.md), not output_A / output_B.
    assert set(panels["butterfly"].series) == {"output_a", "output_b"}


def test_plot_recording_writes_a_png(tmp_path: Path) -> None:
    plan = _plan("self-massage")
    out = plot_recording(ROWS, tmp_path / "rec.png", plan=plan)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_recording_panels_skip_settings_and_prefer_ems_output() -> None:
    panels = {p.device: p for p in recording_panels(ROWS)}
    assert set(panels["pillow-1"].series) == {"speed"}
    assert set(panels["eb1-1"].series) == {"output_a"}
    assert panels["belt-1"].series["motor1"] == [(0.0, 0.0), (0.5, 120.0), (3.0, 0.0)]


def test_nothing_to_plot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PlotError, match="nothing to plot"):
        plot_recording([], tmp_path / "empty.png")


def test_missing_matplotlib_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ConfigError, match=r"pip install 'massaged\[plot\]'"):
        plot_plan(_plan("collar-zone"), tmp_path / "x.png")


# -- a recording and its plan drawn alike ----------------------------------------------------

SESSION_START = 150.0
"""Where the session starts in the recording below (the simulator started first)."""


@functools.cache
def _played(plan_id: str = "collar-zone") -> tuple[dict[str, object], ...]:
    """A recording of a plan played from SESSION_START, after a demonstration before it.

    Made once for the module: no test changes it (nor does reading it into panels)."""
    plan = _plan(plan_id)
    rows: list[dict[str, object]] = [
        {"t": 10.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 60},
        {"t": 12.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0},
        {"t": 30.0, "device": "pillow-1", "kind": "pillow", "channel": "heater", "value": 1},
        {"t": 40.0, "device": "pillow-1", "kind": "pillow", "channel": "heater", "value": 0},
    ]
    names = {"belt": "belt-1", "pillow": "pillow-1", "butterfly": "butterfly-1"}
    for panel in plan_panels(plan):
        for channel, points in panel.series.items():
            for t, value in points:
                rows.append(
                    {
                        "t": SESSION_START + t,
                        "device": names[panel.device],
                        "kind": panel.kind,
                        "channel": channel,
                        "value": value,
                    }
                )
    rows.sort(key=lambda r: float(r["t"]))  # type: ignore[arg-type]
    return tuple(rows)


@functools.cache
def _office_figures() -> tuple[Any, Any]:
    """office-weekly's plan and recording figures, drawn once for the tests that read them."""
    plan = _plan("office-weekly")
    return plan_figure(plan), recording_figure(
        _played("office-weekly"), plan=plan, axis=TimeAxis(SESSION_START)
    )


def test_a_recording_is_put_on_the_program_time_axis() -> None:
    plan = _plan("collar-zone")
    recorded = {p.kind: p for p in recording_panels(_played(), TimeAxis(SESSION_START))}
    planned = {p.kind: p for p in plan_panels(plan)}
    # The same channel names, and the same curves at the same program times.
    for kind, panel in planned.items():
        assert set(recorded[kind].series) == set(panel.series)
        for channel, points in panel.series.items():
            got = recorded[kind].series[channel]
            assert [v for _, v in got] == [float(v) for _, v in points]
            assert [t for t, _ in got] == pytest.approx([t for t, _ in points])


def test_what_happened_before_the_session_is_cut_and_held_at_zero() -> None:
    rows: list[dict[str, object]] = [
        {"t": 5.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 60},
        {"t": 10.0, "device": "belt-1", "kind": "belt", "channel": "motor2", "value": 30},
        {"t": 20.0, "device": "belt-1", "kind": "belt", "channel": "motor2", "value": 0},
    ]
    # At ×10 recording speed and ×20 session speed, recording t=12 is program t=(12-8)*2=8.
    (panel,) = recording_panels(rows, TimeAxis(origin=8.0, ratio=2.0))
    assert panel.series["motor1"] == [(0.0, 60.0)]  # still on when the session started
    assert panel.series["motor2"] == [(4.0, 30.0), (24.0, 0.0)]


def _legend_or_rows(ax: object) -> list[str]:
    """The names a reader sees: legend entries, or the row labels of a strip panel."""
    legend = ax.get_legend()  # type: ignore[attr-defined]
    if legend is not None:
        return [text.get_text() for text in legend.get_texts()]
    return [label.get_text() for label in ax.get_yticklabels()]  # type: ignore[attr-defined]


def test_the_recording_and_the_plan_share_axes_names_steps_and_layout() -> None:
    plan = _plan("office-weekly")
    plan_fig, rec_fig = _office_figures()
    plan_axes = [ax for ax in plan_fig.axes if ax.get_ylabel()]
    rec_axes = [ax for ax in rec_fig.axes if ax.get_ylabel()]
    assert len(plan_axes) == len(rec_axes) == 3
    for p_ax, r_ax in zip(plan_axes, rec_axes, strict=True):
        # One time axis: program seconds from 0 to the plan's end, on the same pixels.
        assert p_ax.get_xlim() == r_ax.get_xlim() == (0.0, plan.duration)
        assert p_ax.get_position().bounds == pytest.approx(r_ax.get_position().bounds)
        # One naming of the channels, every one of them named.
        assert _legend_or_rows(p_ax) == _legend_or_rows(r_ax)
        # The steps shaded on both: one span per step.
        assert len(p_ax.patches) == len(r_ax.patches) == len(plan.steps)
    assert "output_a left" in _legend_or_rows(rec_axes[2])
    assert "recording" in rec_fig.get_suptitle() or plan.program_id in rec_fig.get_suptitle()
    assert plan.program_id in rec_fig.get_suptitle()
    assert plan.program_id in plan_fig.get_suptitle()


def test_the_heater_is_in_the_legend() -> None:
    _, fig = _office_figures()
    pillow = next(ax for ax in fig.axes if ax.get_ylabel().startswith("pillow-1"))
    assert _legend_or_rows(pillow) == ["speed", "heater"]


def test_a_belt_has_one_row_per_motor_and_none_overlaps() -> None:
    fig, _ = _office_figures()
    belt = next(ax for ax in fig.axes if ax.get_ylabel().startswith("belt"))
    rows = _legend_or_rows(belt)
    assert rows[:6] == [
        "motor1 neck left",
        "motor2 neck right",
        "motor3 shoulder left",
        "motor4 shoulder right",
        "motor5 upper back left",
        "motor6 upper back right",
    ]
    assert rows[6:] == ["heater"]
    # Each curve stays inside a band of its own.
    bands = sorted(
        (min(line.get_ydata()), max(line.get_ydata()))
        for line in belt.get_lines()
        if line.get_label() in rows
    )
    assert len(bands) == 7
    for (_, top), (bottom, _) in itertools.pairwise(bands):
        assert top <= bottom


def test_a_recording_uses_its_plans_strip_scale() -> None:
    # A quieter recording (the safety layer's ramp, a gentler press) keeps the plan's scale,
    # so the two plots compare by eye.
    plan = _plan("collar-zone")
    quiet = [
        {**row, "value": float(row["value"]) / 2}  # type: ignore[arg-type]
        if row["kind"] == "butterfly"
        else row
        for row in _played()
    ]
    plan_fig = plan_figure(plan)
    rec_fig = recording_figure(quiet, plan=plan, axis=TimeAxis(SESSION_START))

    def butterfly_scale(fig: object) -> str:
        ax = next(a for a in fig.axes if a.get_ylabel().startswith("butterfly"))  # type: ignore[attr-defined]
        return str(ax.get_ylabel().rsplit("full row = ", 1)[1])

    assert butterfly_scale(rec_fig) == butterfly_scale(plan_fig)
