"""Techniques on the EB1 butterfly: EMS contractions on the back of the neck, shoulders, upper back.

Each repetition is one contraction (waveform intensity up) and relaxation
(waveform intensity 0) on each channel that plays the step, at a
technique-specific pulse frequency, in the same slot as the belt's movement;
channel A works the left side, B the right. The strength comes from the
step's intensity and stays modest (intensity 1.0 is strength 60 of 200): the
profile's caps and the driver's ramp come on top.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

from devices.capabilities import Capabilities, EmsChannel, Side
from devices.outputs import ButterflyOutput, EmsChannelOutput
from programs.model import StepSide, Technique
from programs.render_belt import TAP_ON_S, TAP_PERIOD_S
from programs.render_common import EPS, Frame, StepContext, side_matches
from programs.timeline import Cue

logger = logging.getLogger(__name__)

NOMINAL_MAX_STRENGTH: Final = 60
"""EB1 strength at intensity 1.0: well below the 200 maximum, the profile's cap comes later."""

RAMP_STEP_S: Final = 0.1
"""EB1 daemon rule 2 counts strength raises per 100 ms."""


@dataclass(frozen=True, slots=True)
class EmsRhythm:
    """How a technique contracts: pulse frequency, channels together or in turn, waveform shape."""

    frequency: int
    """EB1 waveform frequency, 10..240."""
    alternate: bool
    """Channels take turns (healthy or left side first) instead of contracting together."""
    shape: tuple[tuple[float, int], ...]
    """(fraction of the contraction, waveform intensity 0..100); ends at 0 for the relaxation."""


_SOFT = ((0.0, 50), (0.15, 100), (0.85, 50), (1.0, 0))
_RISING = ((0.0, 40), (0.25, 60), (0.5, 80), (0.75, 100), (1.0, 0))
_SHARP = ((0.0, 100), (1.0, 0))

RHYTHMS: Final[dict[Technique, EmsRhythm]] = {
    Technique.STROKING: EmsRhythm(100, False, _SOFT),
    Technique.RUBBING: EmsRhythm(60, True, _SOFT),
    Technique.PRESSING: EmsRhythm(40, False, _RISING),
    Technique.KNEADING: EmsRhythm(30, True, _SOFT),
    Technique.CIRCULAR: EmsRhythm(50, True, _SOFT),
    Technique.VIBRATION: EmsRhythm(200, False, _SOFT),
    Technique.TAPPING: EmsRhythm(15, False, _SHARP),
}
"""Contraction rhythm of each technique (rest has none): one contraction per repetition.

Each repetition is one contraction on each channel it plays (together, or
one channel after the other), then a relaxation at waveform intensity 0, in
the same slot as the belt's movement (programs/render_common.py); tapping is
one series of short contractions, 150 ms each.
"""

_SLOTS: Final = ("A", "B")
"""ButterflyOutput has fields a and b for the channels named A and B."""


def strength_for(intensity: float, channel: EmsChannel) -> int:
    """Nominal EMS strength for an intensity 0..1."""
    return min(channel.max_strength, round(NOMINAL_MAX_STRENGTH * min(1.0, max(0.0, intensity))))


def playing_channels(ctx: StepContext) -> list[EmsChannel]:
    """The channels whose pads sit in the step's zone and on its side (A/B only)."""
    return [
        ch
        for ch in ctx.caps.ems_channels
        if ch.name in _SLOTS
        and any(place in ch.places for place in ctx.places)
        and side_matches(ch.side, ctx.side)
    ]


def _output(channels: dict[str, EmsChannelOutput]) -> ButterflyOutput:
    return ButterflyOutput(
        a=channels.get("A", EmsChannelOutput()), b=channels.get("B", EmsChannelOutput())
    )


def _ordered(channels: list[EmsChannel], ctx: StepContext) -> list[EmsChannel]:
    """The channels with the healthy (or left) side first."""
    order = ctx.side_order
    return sorted(channels, key=lambda ch: order.index(ch.side) if ch.side in order else 0)


def _contractions(
    rhythm: EmsRhythm, technique: Technique, count: int, active: float
) -> list[list[tuple[float, int]]]:
    """Per group of channels, its (offset, waveform intensity) keyframes in one slot."""
    if technique is Technique.TAPPING:
        taps = max(1, math.floor(active / TAP_PERIOD_S + EPS))
        on = min(TAP_ON_S, active / 2)
        keys = [(k * TAP_PERIOD_S + d, w) for k in range(taps) for d, w in ((0.0, 100), (on, 0))]
        return [keys]
    w = active / (count + 1)
    return [[(j * w + f * 2 * w, wave) for f, wave in rhythm.shape] for j in range(count)]


def butterfly_frames(ctx: StepContext) -> list[Frame]:
    """The butterfly's outputs for one step; empty when the butterfly does not play it."""
    rhythm = RHYTHMS.get(ctx.technique)
    channels = _ordered(playing_channels(ctx), ctx)
    if rhythm is None or not channels:
        return []
    groups = [[ch] for ch in channels] if rhythm.alternate else [channels]

    def movement(slot: float) -> list[tuple[float, dict[str, int]]]:
        keys = _contractions(rhythm, ctx.technique, len(groups), ctx.active_s(slot))
        events = sorted(
            (offset, ch.name, wave)
            for group, group_keys in zip(groups, keys, strict=True)
            for ch in group
            for offset, wave in group_keys
        )
        waves = {ch.name: 0 for ch in channels}
        frames: list[tuple[float, dict[str, int]]] = []
        for offset, name, wave in events:
            waves[name] = wave
            if frames and abs(frames[-1][0] - offset) <= EPS:
                frames[-1] = (frames[-1][0], dict(waves))
            else:
                frames.append((round(offset, 6), dict(waves)))
        return frames

    sides = tuple(dict.fromkeys(ch.side for ch in channels))
    # As on the belt (programs/render_belt.py): only a ramp's intensity and a transition's
    # side weights change with time, and every movement repeats the same keyframes, so
    # each keyframe at one intensity and side weight is made once.
    steady = None if ctx.step.is_ramp else ctx.intensity(ctx.start)
    fixed = None
    if ctx.step.side is not StepSide.TO_PAINFUL:
        fixed = {side: ctx.side_weight(side, ctx.start) for side in sides}
    made: dict[tuple[int, float, tuple[float, ...]], ButterflyOutput] = {}

    def output(
        waves: dict[str, int], intensity: float, weights: dict[Side, float]
    ) -> ButterflyOutput:
        key = (id(waves), intensity, tuple(weights.values()))
        made_output = made.get(key)
        if made_output is None:
            outputs = {
                ch.name: EmsChannelOutput(
                    strength=strength_for(intensity * weights[ch.side], ch),
                    frequency=rhythm.frequency,
                    intensity=waves[ch.name],
                )
                for ch in channels
            }
            made_output = made[key] = _output(outputs)
        return made_output

    if steady is not None and fixed is not None:
        # Neither the intensity nor the side weights move: every movement plays the same
        # outputs, made once from the movement's keyframes and laid out by ctx.movements.
        def outputs(slot: float) -> list[tuple[float, ButterflyOutput]]:
            return [(offset, output(waves, steady, fixed)) for offset, waves in movement(slot)]

        return ctx.movements(outputs)
    frames: list[Frame] = []
    for t, waves in ctx.movements(movement):
        intensity = steady if steady is not None else ctx.intensity(t)
        weights = fixed if fixed is not None else {side: ctx.side_weight(side, t) for side in sides}
        frames.append((t, output(waves, intensity, weights)))
    return frames


def limit_raise(cues: list[Cue], caps: Capabilities) -> list[Cue]:
    """Raise strengths by at most the channel's allowance per 100 ms (EB1 rule 2), adding cues.

    A strength that would jump is raised in steps every 100 ms from the cue's
    time until it arrives or the next cue comes; lowering is immediate.
    """
    allowance = {ch.name: ch.max_raise_per_100ms for ch in caps.ems_channels}
    held = {"A": 0, "B": 0}
    last_raise = {"A": -math.inf, "B": -math.inf}
    out: list[Cue] = []

    def limited(t: float, target: ButterflyOutput) -> ButterflyOutput:
        parts: list[EmsChannelOutput] = []
        for name, part in (("A", target.a), ("B", target.b)):
            strength = part.strength
            if strength > held[name]:
                step = allowance.get(name, 5) if t - last_raise[name] >= RAMP_STEP_S - EPS else 0
                strength = min(strength, held[name] + step)
                if strength > held[name]:
                    last_raise[name] = t
            held[name] = strength
            unchanged = strength == part.strength
            parts.append(
                part if unchanged else EmsChannelOutput(strength, part.frequency, part.intensity)
            )
        a, b = parts
        # Most cues need no limit: they keep their (shared) output object.
        return target if a is target.a and b is target.b else ButterflyOutput(a=a, b=b)

    for i, cue in enumerate(cues):
        assert isinstance(cue.output, ButterflyOutput)
        target = cue.output
        out.append(Cue(t=cue.t, output=limited(cue.t, target), step=cue.step))
        next_t = cues[i + 1].t if i + 1 < len(cues) else math.inf
        t = cue.t
        while (held["A"] < target.a.strength or held["B"] < target.b.strength) and (
            t + RAMP_STEP_S < next_t - EPS
        ):
            t = round(t + RAMP_STEP_S, 3)
            out.append(Cue(t=t, output=limited(t, target), step=cue.step))
    return out
