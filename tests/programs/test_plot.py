"""Plots: a plan or a recording becomes a PNG; a missing matplotlib is a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devices.errors import ConfigError
from programs.library import get
from programs.plot import PlotError, plan_panels, plot_plan, plot_recording, recording_panels
from programs.render import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ROWS: list[dict[str, object]] = [
    {"t": 0.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0},
    {"t": 0.5, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 120},
    {"t": 0.5, "device": "belt-1", "kind": "belt", "channel": "heater", "value": 1},
    {"t": 1.0, "device": "pillow-1", "kind": "pillow", "channel": "speed", "value": 2},
    {"t": 1.0, "device": "pillow-1", "kind": "pillow", "channel": "direction", "value": "cw"},
    {"t": 1.2, "device": "eb1-1", "kind": "butterfly", "channel": "strength_A", "value": 20},
    {"t": 1.2, "device": "eb1-1", "kind": "butterfly", "channel": "output_A", "value": 10},
    {"t": 3.0, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": 0},
]


def test_plot_plan_writes_a_png(tmp_path: Path) -> None:
    plan = render(get("collar-zone").program)
    out = plot_plan(plan, tmp_path / "sub" / "plan.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_plan_panels_use_the_recording_channel_names() -> None:
    panels = {p.device: p for p in plan_panels(render(get("office-weekly").program))}
    assert set(panels["belt"].series) == {f"motor{i}" for i in range(1, 7)} | {"heater"}
    assert set(panels["pillow"].series) == {"speed", "heater"}
    assert set(panels["butterfly"].series) == {"output_A", "output_B"}


def test_plot_recording_writes_a_png(tmp_path: Path) -> None:
    plan = render(get("self-massage").program)
    out = plot_recording(ROWS, tmp_path / "rec.png", plan=plan)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_recording_panels_skip_settings_and_prefer_ems_output() -> None:
    panels = {p.device: p for p in recording_panels(ROWS)}
    assert set(panels["pillow-1"].series) == {"speed"}
    assert set(panels["eb1-1"].series) == {"output_A"}
    assert panels["belt-1"].series["motor1"] == [(0.0, 0.0), (0.5, 120.0), (3.0, 0.0)]


def test_nothing_to_plot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PlotError, match="nothing to plot"):
        plot_recording([], tmp_path / "empty.png")


def test_missing_matplotlib_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ConfigError, match=r"pip install 'massaged\[plot\]'"):
        plot_plan(render(get("collar-zone").program), tmp_path / "x.png")
