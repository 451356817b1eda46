"""Rendering a program onto devices: device-independent steps become per-device cues.

Steps are placed end to end from t = 0 on one time axis shared by every
device. Each kind of device has a renderer (belt, pillow, butterfly) that
turns a step into outputs in device units at the program's nominal
intensity; a device that does not play a step (not in its devices list, no
output in its zone or on its side, a rest) is off during it. Every timeline
ends with a zero cue at the session's end. The runner's safety layer scales
and caps the outputs later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from devices.capabilities import (
    Capabilities,
    DeviceKind,
    Side,
)
from devices.kinds import KINDS, off_output
from programs.model import Program
from programs.render_belt import belt_frames
from programs.render_butterfly import butterfly_frames, limit_raise
from programs.render_common import EPS, Frame, StepContext, resolve_side
from programs.render_pillow import avoid_auto_off, pillow_frames
from programs.timeline import Cue, DeviceTimeline, SessionPlan, StepSpan

logger = logging.getLogger(__name__)


def _unchanged(cues: list[Cue], caps: Capabilities) -> list[Cue]:
    return cues


@dataclass(frozen=True, slots=True)
class KindRenderer:
    """How one kind of device plays steps: its frames and a final pass (off: devices.kinds)."""

    frames: Callable[[StepContext], list[Frame]]
    finish: Callable[[list[Cue], Capabilities], list[Cue]] = field(default=_unchanged)


RENDERERS: Final[dict[DeviceKind, KindRenderer]] = {
    DeviceKind.BELT: KindRenderer(belt_frames),
    DeviceKind.PILLOW: KindRenderer(pillow_frames, avoid_auto_off),
    DeviceKind.BUTTERFLY: KindRenderer(butterfly_frames, limit_raise),
}
"""The renderer of each device kind."""


def default_devices() -> dict[str, Capabilities]:
    """Preview devices when none are given: one of each kind (devices.kinds), named by kind."""
    return {kind.value: spec.preview for kind, spec in KINDS.items()}


def step_spans(program: Program) -> list[StepSpan]:
    """Where each step sits: end to end from t = 0."""
    spans: list[StepSpan] = []
    t = 0.0
    for i, step in enumerate(program.steps):
        end = t + step.duration
        label = step.label or f"{step.technique.value} {step.zone.value}"
        spans.append(
            StepSpan(
                index=i,
                technique=step.technique.value,
                zone=step.zone.value,
                label=label,
                start=round(t, 3),
                end=round(end, 3),
            )
        )
        t = end
    return spans


def _drop_repeats(cues: list[Cue]) -> list[Cue]:
    """Drop cues that change nothing, keeping each step's first cue and the final one."""
    kept: list[Cue] = []
    last = len(cues) - 1
    for i, cue in enumerate(cues):
        if kept and i != last:
            prev = kept[-1]
            # The renderers reuse one output object for a repeated frame: identity first.
            same = cue.output is prev.output or cue.output == prev.output
            if same and cue.step == prev.step:
                continue
        kept.append(cue)
    return kept


def render_device(
    program: Program,
    name: str,
    caps: Capabilities,
    spans: list[StepSpan],
    *,
    painful_side: Side | None = None,
) -> DeviceTimeline:
    """The timeline of one device for a program."""
    renderer = RENDERERS[caps.kind]
    off = off_output(caps)
    cues: list[Cue] = []
    for span, step in zip(spans, program.steps, strict=True):
        ctx = StepContext(
            step=step,
            index=span.index,
            side=resolve_side(step.side, painful_side),
            start=span.start,
            end=span.end,
            caps=caps,
            painful_side=painful_side,
        )
        frames = renderer.frames(ctx) if ctx.for_this_kind else []
        if not frames or frames[0][0] > span.start + EPS:
            frames.insert(0, (span.start, off))
        index = span.index
        cues.extend([Cue(round(t, 3), output, index) for t, output in frames])
    end = spans[-1].end if spans else 0.0
    cues.append(Cue(t=end, output=off, step=spans[-1].index if spans else 0))
    cues = _drop_repeats(renderer.finish(cues, caps))
    logger.debug("%s: %d cues for %s", name, len(cues), program.id)
    return DeviceTimeline(device=name, capabilities=caps, cues=cues)


def render(
    program: Program,
    devices: Mapping[str, Capabilities] | None = None,
    *,
    painful_side: Side | None = None,
) -> SessionPlan:
    """Render a program onto devices (default: the preview devices) as one session plan."""
    if devices is None:
        devices = default_devices()
    spans = step_spans(program)
    timelines = {
        name: render_device(program, name, caps, spans, painful_side=painful_side)
        for name, caps in devices.items()
    }
    return SessionPlan(
        program_id=program.id,
        title=program.title,
        audience=program.audience.value,
        duration=spans[-1].end if spans else 0.0,
        steps=spans,
        timelines=timelines,
    )
