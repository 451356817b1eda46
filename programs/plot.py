"""Pictures of a session: a rendered plan or a simulator recording as a PNG, one panel per device.

A plan and the recording of playing it are drawn alike so that they can be
laid side by side: the same channel names (the recording's, docs/simulator.md:
motor1.., heater, speed, output_a/b = EMS strength × waveform intensity / 100),
the same time axis (program seconds, 0 at the session's start; a recording is
shifted and scaled onto it by a :class:`TimeAxis`), the same figure size and
margins, the program's steps shaded and a title. A belt's motors get one row
each (a filled strip per motor) rather than six overlapping lines. matplotlib is
optional (the "plot" extra) and imported only here, only when a picture is asked for.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devices.capabilities import DeviceKind
from devices.kinds import KINDS, KindSpec
from programs.errors import PlotError
from programs.timeline import SessionPlan, StepSpan

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

HEAT_CHANNELS: Final = frozenset({"heater", "heat"})
"""On/off channels: drawn on a second 0..1 axis, or as a row of their own on a belt."""

_SHADES: Final = ("#f2f2f2", "#e3ecf7")
_WIDTH_IN: Final = 12.0
_MARGINS: Final = {"left": 0.15, "right": 0.92}
"""The same figure width and side margins for every plot, so a plan and its recording line up."""
_KIND_ORDER: Final = {kind.value: i for i, kind in enumerate(KINDS)}
_ROW_FILL: Final = 0.8
"""Height of a full-scale strip in a one-row-per-channel panel (rows are 1 apart)."""
_ROW_KINDS: Final = {kind.value for kind, spec in KINDS.items() if spec.plot_rows}
"""Kinds drawn as one strip per channel: six motors (or two EMS channels) on one set of
axes would hide each other."""
_EMS_LABELS: Final = {"output_a": "output_a left", "output_b": "output_b right"}


Series = list[tuple[float, float]]


@dataclass
class Panel:
    """One device's curves: channel name -> (time, value) steps."""

    device: str
    kind: str
    unit: str
    series: dict[str, Series] = field(default_factory=dict)


@dataclass(frozen=True)
class TimeAxis:
    """How a recording's seconds map onto program seconds.

    A recording counts simulated seconds from the simulator's start, at the
    simulator's speed; a program counts from the session's start, at the
    session's speed. ``origin`` is the recording time at which the session
    started, ``ratio`` the session's speed over the recording's (1 when the
    simulator and the daemon run at the same ``--speed``, as in the demo).
    """

    origin: float = 0.0
    ratio: float = 1.0

    def program_t(self, t: float) -> float:
        """The program time of recording time t."""
        return (t - self.origin) * self.ratio


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


_UNITS: Final = {kind.value: spec.unit for kind, spec in KINDS.items()}


def plan_panels(plan: SessionPlan) -> list[Panel]:
    """The curves of every device of a plan, named like the recording's channels."""
    panels: list[Panel] = []
    for name, timeline in plan.timelines.items():
        caps = timeline.capabilities
        panel = Panel(name, caps.kind.value, _UNITS[caps.kind.value])
        series: dict[str, Series] = defaultdict(list)
        # The renderers reuse one output object for repeated frames: each is read once.
        read: dict[int, tuple[tuple[str, float], ...]] = {}
        for cue in timeline.cues:
            out = cue.output
            felt = read.get(id(out))
            if felt is None:
                # The recording's names (docs/simulator.md): motor1.., speed, output_a/b.
                felt = out.felt()
                if caps.heater:
                    felt += (("heater", 1.0 if out.heat else 0.0),)
                read[id(out)] = felt
            for channel, value in felt:
                series[channel].append((cue.t, value))
        panel.series = dict(series)
        panels.append(panel)
    return _ordered(panels)


def _ordered(panels: list[Panel]) -> list[Panel]:
    """Belt, pillow, butterfly (then anything else): the same order in every plot."""
    return sorted(panels, key=lambda p: (_KIND_ORDER.get(p.kind, len(_KIND_ORDER)), p.device))


def _motor_labels(plan: SessionPlan) -> dict[str, str]:
    """Labels for belt motors, from the plan's belt: "motor1 neck left"."""
    for timeline in plan.timelines.values():
        if timeline.capabilities.motors:
            return {
                f"motor{m.index}": f"motor{m.index} {m.place.value} {m.side.value}".replace(
                    "_", " "
                )
                for m in timeline.capabilities.motors
            }
    return {}


def recording_panels(
    rows: Iterable[Mapping[str, object]], axis: TimeAxis | None = None
) -> list[Panel]:
    """The curves of a recording (rows of t, device, kind, channel, value); text values skipped.

    With an axis, times are program times and what happened before the session
    (the simulator's start, a demonstration) is cut: each channel starts at 0
    with the value it held when the session started.
    """
    axis = axis or TimeAxis()
    by_device: dict[str, Panel] = {}
    for row in rows:
        value = row.get("value")
        t = row.get("t")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # "direction" is a setting, not an amount
        if isinstance(t, bool) or not isinstance(t, int | float):
            continue
        device, kind = str(row.get("device", "?")), str(row.get("kind", "?"))
        panel = by_device.setdefault(device, Panel(device, kind, _UNITS.get(kind, "value")))
        channel = str(row.get("channel", "?"))
        panel.series.setdefault(channel, []).append((axis.program_t(float(t)), float(value)))
    for panel in by_device.values():
        for name, series in panel.series.items():
            series.sort(key=lambda point: point[0])
            panel.series[name] = _from_zero(series)
        # A butterfly's effective output (output_a/b) is what the user feels; the held
        # strength and the waveform only frame it.
        if any(name.startswith("output") for name in panel.series):
            panel.series = {k: v for k, v in panel.series.items() if k.startswith("output")}
    return _ordered([p for p in by_device.values() if any(p.series.values())])


def _from_zero(series: Series) -> Series:
    """The points at t >= 0, led by the value held at 0 (a change before 0 still holds)."""
    before = [p for p in series if p[0] < 0]
    after = [p for p in series if p[0] >= 0]
    if before and not (after and after[0][0] == 0):
        after.insert(0, (0.0, before[-1][1]))
    return after


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


def _stepped(points: Series, last_t: float) -> tuple[list[float], list[float]]:
    """A step curve's x and y, held to last_t."""
    ts = [t for t, _ in points] + [max(last_t, points[-1][0])]
    vs = [v for _, v in points] + [points[-1][1]]
    return ts, vs


def _draw_lines(ax: Axes, panel: Panel, last_t: float, names: Mapping[str, str]) -> None:
    """One line per channel; a heater on a second off/on axis, in the same legend."""
    heat_ax: Axes | None = None
    for channel, points in panel.series.items():
        if not points:
            continue
        ts, vs = _stepped(points, last_t)
        if channel in HEAT_CHANNELS:
            heat_ax = heat_ax or ax.twinx()
            heat_ax.step(ts, vs, where="post", color="tab:red", ls="--", lw=1, label=channel)
            heat_ax.set_ylim(-0.05, 1.5)
            heat_ax.set_yticks([0, 1], labels=["off", "on"], fontsize=7)
            continue
        ax.step(ts, vs, where="post", lw=1.2, label=names.get(channel, channel))
    handles, labels = ax.get_legend_handles_labels()
    if heat_ax is not None:
        # A twin axis keeps its own legend entries: gather them into the one legend.
        more_handles, more_labels = heat_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        ax.legend(handles, labels, loc="upper right", fontsize=7, ncol=4, framealpha=0.85)
    ax.set_ylabel(f"{panel.device}\n{panel.unit}", fontsize=8)
    maximum = _maximum(panel.kind)
    if maximum is not None:
        ax.set_ylim(-0.25, maximum + 0.6)  # the whole unit, room for the legend
        ax.set_yticks(list(range(maximum + 1)))
    ax.grid(axis="y", lw=0.3)


def _spec(kind: str) -> KindSpec | None:
    """The kinds table entry of a panel's kind (a recording may name one we do not know)."""
    try:
        return KINDS[DeviceKind(kind)]
    except ValueError:
        return None


def _maximum(kind: str) -> int | None:
    """The unit maximum of a line panel's kind (a pillow's top speed), None for others."""
    spec = _spec(kind)
    return spec.maximum if spec is not None and not spec.plot_rows else None


def _row_channels(panel: Panel) -> list[str]:
    """A panel's rows, top to bottom: motor1, motor2, ... (or output_a, output_b), then heat."""
    motors = sorted(
        (c for c in panel.series if c.startswith("motor") and c[5:].isdigit()),
        key=lambda c: int(c[5:]),
    )
    heat = [c for c in panel.series if c in HEAT_CHANNELS]
    others = sorted(c for c in panel.series if c not in motors and c not in heat)
    return motors + others + heat


def _full_scale(panel: Panel, at_least: float = 1.0) -> float:
    """The value of a full strip: the kind's (a belt's maximum level), else the panel's highest
    value (or at_least)."""
    spec = _spec(panel.kind)
    if spec is not None and spec.plot_full_scale is not None:
        return spec.plot_full_scale
    values = [v for c, s in panel.series.items() if c not in HEAT_CHANNELS for _, v in s]
    return max([at_least, *values])


def _plan_scales(plan: SessionPlan, panels: Sequence[Panel] | None = None) -> dict[str, float]:
    """Each kind's full strip in the plan: a recording drawn with it uses the same (or more).

    panels are the plan's (plan_panels), when the caller has them already."""
    if panels is None:
        panels = plan_panels(plan)
    return {panel.kind: _full_scale(panel) for panel in panels}


def _draw_rows(
    ax: Axes, panel: Panel, last_t: float, names: Mapping[str, str], at_least: float
) -> None:
    """One strip per channel (a belt's motors, a butterfly's outputs): no line hides another."""
    full_scale = _full_scale(panel, at_least)
    channels = _row_channels(panel)
    # y is set at the end (set_ylim): as for x in _draw, autoscaling it on the way is waste.
    ax.set_autoscaley_on(False)
    ticks: list[float] = []
    tick_labels: list[str] = []
    for row, channel in enumerate(channels):
        base = len(channels) - 1 - row
        points = panel.series[channel]
        ts, vs = _stepped(points, last_t)
        scale = 1.0 if channel in HEAT_CHANNELS else full_scale
        ys = [base + _ROW_FILL * min(1.0, v / scale) for v in vs]
        colour = "tab:red" if channel in HEAT_CHANNELS else f"C{row % 10}"
        label = names.get(channel, _EMS_LABELS.get(channel, channel))
        ax.fill_between(ts, base, ys, step="post", color=colour, alpha=0.35, lw=0)
        ax.step(ts, ys, where="post", color=colour, lw=1, label=label)
        ax.axhline(base, color="#999999", lw=0.4)
        ticks.append(base + _ROW_FILL / 2)
        tick_labels.append(label)
    ax.set_yticks(ticks, labels=tick_labels, fontsize=7)
    ax.set_ylim(-0.1, len(channels) - 0.1)
    ax.set_ylabel(f"{panel.device}\n{panel.unit}\nfull row = {full_scale:g}", fontsize=8)


def _panel_height(panel: Panel) -> float:
    """Inches: a strip per channel, or a fixed panel of lines."""
    if panel.kind in _ROW_KINDS:
        return max(1.4, 0.42 * len(panel.series) + 0.4)
    return 2.0


def _draw(
    panels: Sequence[Panel],
    out: Path,
    *,
    title: str,
    steps: Sequence[StepSpan] = (),
    end: float | None = None,
    labels: Mapping[str, str] | None = None,
    scales: Mapping[str, float] | None = None,
) -> Any:
    """Draw the panels; returns the matplotlib Figure (written by _save)."""
    _require(panels, out)
    figure_cls, canvas_cls = _matplotlib()
    top_space = 1.7 if steps else 0.6  # inches for the title and the slanted step labels
    heights = [_panel_height(p) for p in panels]
    height = sum(heights) + 0.15 * len(panels) + top_space + 0.6
    fig = figure_cls(figsize=(_WIDTH_IN, height), dpi=100)
    canvas_cls(fig)
    axes = fig.subplots(
        len(panels), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights}
    )[:, 0]
    for ax in axes:
        # x is set once at the end (set_xlim, shared by every panel): autoscaling it along the
        # way changes nothing drawn and costs, as each axvline reads the x bounds and
        # autoscaling gathers every artist of every panel then.
        ax.set_autoscalex_on(False)
    last_t = end if end is not None else 0.0
    if end is None:
        for panel in panels:
            for points in panel.series.values():
                if points:
                    last_t = max(last_t, points[-1][0])
    names = labels or {}
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        _draw_steps(ax, steps, labels=i == 0, end=last_t)
        if panel.kind in _ROW_KINDS:
            _draw_rows(ax, panel, last_t, names, (scales or {}).get(panel.kind, 1.0))
        else:
            _draw_lines(ax, panel, last_t, names)
    axes[-1].set_xlabel("program time, seconds from the session's start")
    axes[-1].set_xlim(0, max(last_t, 1.0))
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height)
    # Fixed margins rather than tight_layout: long step labels would make it give up and warn,
    # and a plan and its recording must put t on the same pixels.
    fig.subplots_adjust(
        **_MARGINS,
        bottom=0.6 / height,
        top=1 - top_space / height,
        hspace=0.15 * len(panels) / height,
    )
    return fig


def _require(panels: Sequence[Panel], out: Path) -> None:
    """PlotError when there is no device to draw."""
    if not panels:
        raise PlotError(f"{out}: nothing to plot (no device)")


def _check_target(panels: Sequence[Panel], out: Path) -> None:
    """The errors a plot would end in, before the figure is drawn (and matplotlib imported)."""
    _require(panels, out)
    if not out.parent.is_dir():
        raise PlotError(f"{out}: the folder {out.parent} does not exist")


def _save(fig: Any, out: Path) -> Path:
    """Write the figure as a PNG; only the file itself is created, never a folder
    (_check_target has found the folder)."""
    try:
        fig.savefig(out, format="png")
    except OSError as err:
        raise PlotError(f"{out}: cannot write: {err.strerror or err}") from err
    logger.info("wrote %s", out)
    return out


def plan_figure(plan: SessionPlan, out: Path = Path("plan.png")) -> Any:
    """The Figure of a rendered plan (plot_plan writes it)."""
    return _plan_figure(plan, plan_panels(plan), out)


def _plan_figure(plan: SessionPlan, panels: list[Panel], out: Path) -> Any:
    return _draw(
        panels,
        out,
        title=f"{plan.program_id}: {plan.title} ({plan.audience}, {plan.duration / 60:.1f} min)"
        " — the plan",
        steps=plan.steps,
        end=plan.duration,
        labels=_motor_labels(plan),
        scales=_plan_scales(plan, panels),
    )


def plot_plan(plan: SessionPlan, out: Path) -> Path:
    """Draw a rendered plan as a PNG: one panel per device, steps shaded and labelled."""
    panels = plan_panels(plan)
    _check_target(panels, out)
    return _save(_plan_figure(plan, panels, out), out)


def recording_figure(
    rows: Iterable[Mapping[str, object]],
    out: Path = Path("recording.png"),
    *,
    plan: SessionPlan | None = None,
    axis: TimeAxis | None = None,
    title: str | None = None,
) -> Any:
    """The Figure of a recording (plot_recording writes it)."""
    return _recording_figure(recording_panels(rows, axis), out, plan=plan, title=title)


def _recording_figure(
    panels: list[Panel], out: Path, *, plan: SessionPlan | None, title: str | None
) -> Any:
    if title is None:
        title = "recording"
        if plan is not None:
            title = f"{plan.program_id}: {plan.title} — as the simulated devices played it"
    return _draw(
        panels,
        out,
        title=title,
        steps=plan.steps if plan is not None else (),
        end=plan.duration if plan is not None else None,
        labels=_motor_labels(plan) if plan is not None else None,
        scales=_plan_scales(plan) if plan is not None else None,
    )


def plot_recording(
    rows: Iterable[Mapping[str, object]],
    out: Path,
    *,
    plan: SessionPlan | None = None,
    axis: TimeAxis | None = None,
    title: str | None = None,
) -> Path:
    """Draw a simulator recording as a PNG, on the plan's time axis and steps when one is given."""
    panels = recording_panels(rows, axis)
    _check_target(panels, out)
    return _save(_recording_figure(panels, out, plan=plan, title=title), out)
