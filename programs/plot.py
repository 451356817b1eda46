"""Pictures of a session: a rendered plan or a simulator recording as a PNG, one panel per device.

Channel names follow the simulator's recording (motor1.., heater, speed,
output_A/B = EMS strength × waveform intensity / 100), so a plan and the
recording of playing it look alike. matplotlib is optional (the "plot"
extra) and imported only here, only when a picture is asked for.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devices.capabilities import DeviceKind
from devices.errors import ConfigError
from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput
from programs.timeline import SessionPlan, StepSpan

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

HEAT_CHANNELS: Final = frozenset({"heater", "heat"})
"""On/off channels drawn on a second 0..1 axis."""

_SHADES: Final = ("#f2f2f2", "#e3ecf7")


class PlotError(ConfigError):
    """A plot cannot be drawn: matplotlib is missing or there is nothing to draw."""


Series = list[tuple[float, float]]


@dataclass
class Panel:
    """One device's curves: channel name -> (time, value) steps."""

    device: str
    kind: str
    unit: str
    series: dict[str, Series] = field(default_factory=dict)


def _matplotlib() -> tuple[Any, Any]:
    """Figure and FigureCanvasAgg, imported lazily (no pyplot: no display, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotError(
            "plotting needs matplotlib, which is not installed: pip install 'massaged[plot]'"
        ) from err
    return Figure, FigureCanvasAgg


_UNITS: Final = {
    DeviceKind.BELT.value: "level 0..255",
    DeviceKind.PILLOW.value: "speed 0..3",
    DeviceKind.BUTTERFLY.value: "strength × intensity",
}


def plan_panels(plan: SessionPlan) -> list[Panel]:
    """The curves of every device of a plan, named like the recording's channels."""
    panels: list[Panel] = []
    for name, timeline in plan.timelines.items():
        caps = timeline.capabilities
        panel = Panel(name, caps.kind.value, _UNITS[caps.kind.value])
        series: dict[str, Series] = defaultdict(list)
        for cue in timeline.cues:
            out = cue.output
            if isinstance(out, BeltOutput):
                for i, level in enumerate(out.levels):
                    series[f"motor{i + 1}"].append((cue.t, level))
                if caps.heater:
                    series["heater"].append((cue.t, 1.0 if out.heat else 0.0))
            elif isinstance(out, PillowOutput):
                series["speed"].append((cue.t, out.speed))
                if caps.heater:
                    series["heater"].append((cue.t, 1.0 if out.heat else 0.0))
            elif isinstance(out, ButterflyOutput):
                for ch_name, ch in (("A", out.a), ("B", out.b)):
                    series[f"output_{ch_name}"].append((cue.t, ch.strength * ch.intensity / 100))
        panel.series = dict(series)
        panels.append(panel)
    return panels


def _motor_labels(plan: SessionPlan, device: str) -> dict[str, str]:
    """Legend labels for belt motors: "motor1 neck left"."""
    timeline = plan.timelines[device]
    return {
        f"motor{m.index}": f"motor{m.index} {m.place.value} {m.side.value}"
        for m in timeline.capabilities.motors
    }


def recording_panels(rows: Iterable[Mapping[str, object]]) -> list[Panel]:
    """The curves of a recording (rows of t, device, kind, channel, value); text values skipped."""
    by_device: dict[str, Panel] = {}
    for row in rows:
        value = row.get("value")
        t = row.get("t")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # "direction" is a setting, not an amount
        if not isinstance(t, int | float):
            continue
        device, kind = str(row.get("device", "?")), str(row.get("kind", "?"))
        panel = by_device.setdefault(device, Panel(device, kind, _UNITS.get(kind, "value")))
        panel.series.setdefault(str(row.get("channel", "?")), []).append((float(t), float(value)))
    for panel in by_device.values():
        for series in panel.series.values():
            series.sort(key=lambda point: point[0])
        if panel.kind == DeviceKind.BUTTERFLY.value:
            # The effective output is what the user feels; the held strength only frames it.
            has_output = any(name.startswith("output") for name in panel.series)
            if has_output:
                panel.series = {k: v for k, v in panel.series.items() if k.startswith("output")}
    return list(by_device.values())


def _draw_steps(ax: Axes, steps: Sequence[StepSpan], *, labels: bool, end: float) -> None:
    for span in steps:
        if span.start >= end:
            break
        ax.axvspan(span.start, span.end, color=_SHADES[span.index % 2], zorder=0, lw=0)
        ax.axvline(span.start, color="#bbbbbb", lw=0.6, zorder=1)
        if labels:
            ax.text(
                (span.start + span.end) / 2,
                1.02,
                f"{span.index + 1}. {span.label}",
                transform=ax.get_xaxis_transform(),
                rotation=45,
                fontsize=7,
                ha="left",
                va="bottom",
            )


def _draw(
    panels: Sequence[Panel],
    out: Path,
    *,
    title: str,
    steps: Sequence[StepSpan] = (),
    end: float | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Render panels to a PNG file."""
    if not panels:
        raise PlotError(f"{out}: nothing to plot (no device)")
    figure_cls, canvas_cls = _matplotlib()
    top_space = 1.7 if steps else 0.6  # inches for the title and the slanted step labels
    height = 2.3 * len(panels) + top_space + 0.6
    fig = figure_cls(figsize=(12, height), dpi=100)
    canvas_cls(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    last_t = end if end is not None else 0.0
    for panel in panels:
        for points in panel.series.values():
            if points:
                last_t = max(last_t, points[-1][0])
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        _draw_steps(ax, steps, labels=i == 0, end=last_t)
        heat_ax: Axes | None = None
        names = (labels or {}).get(panel.device, {})
        for channel, points in panel.series.items():
            if not points:
                continue
            ts = [t for t, _ in points] + [last_t]
            vs = [v for _, v in points] + [points[-1][1]]
            if channel in HEAT_CHANNELS:
                heat_ax = heat_ax or ax.twinx()
                heat_ax.step(ts, vs, where="post", color="tab:red", ls="--", lw=1, label="heat")
                heat_ax.set_ylim(-0.05, 1.5)
                heat_ax.set_yticks([0, 1], labels=["off", "on"], fontsize=7)
                continue
            ax.step(ts, vs, where="post", lw=1, label=names.get(channel, channel))
        ax.set_ylabel(f"{panel.device}\n{panel.unit}", fontsize=8)
        ax.legend(loc="upper right", fontsize=6, ncol=3, framealpha=0.8)
        ax.grid(axis="y", lw=0.3)
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, max(last_t, 1.0))
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height)
    # Fixed margins rather than tight_layout: long step labels would make it give up and warn.
    fig.subplots_adjust(
        left=0.07, right=0.93, bottom=0.6 / height, top=1 - top_space / height, hspace=0.12
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    logger.info("wrote %s", out)
    return out


def plot_plan(plan: SessionPlan, out: Path) -> Path:
    """Draw a rendered plan as a PNG: one panel per device, steps shaded and labelled."""
    labels = {
        name: _motor_labels(plan, name)
        for name, timeline in plan.timelines.items()
        if timeline.capabilities.kind is DeviceKind.BELT
    }
    return _draw(
        plan_panels(plan),
        out,
        title=f"{plan.program_id}: {plan.title} ({plan.audience}, {plan.duration / 60:.1f} min)",
        steps=plan.steps,
        end=plan.duration,
        labels=labels,
    )


def plot_recording(
    rows: Iterable[Mapping[str, object]],
    out: Path,
    *,
    plan: SessionPlan | None = None,
    title: str = "recording",
) -> Path:
    """Draw a simulator recording as a PNG, with a plan's steps shaded when one is given."""
    return _draw(
        recording_panels(rows),
        out,
        title=title,
        steps=plan.steps if plan is not None else (),
        end=plan.duration if plan is not None else None,
    )
