"""The EB1 wheel against whatever the program does: a property test on virtual time.

Random program targets and turns of the unit's wheel, on a radio whose answers come
late by a random delay. Judged by the unit's own record (the simulated firmware's):

- after the user turns a channel to w (a turn the unit reports: one that changed it), the
  unit holds at most w + one ramp step, at
  most once (a raise the host wrote before it heard of the turn), and never more than
  w again until the next turn (rule 4: the user's word is the ceiling);
- between turns, no channel rises more than a ramp step within 100 ms (rule 2).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.protocols import eb1
from simulator.faults import LinkFaults
from simulator.recording import Recorder
from tests.devices.test_driver_eb1 import connected, out
from tests.method.virtual_time import run_virtual

STEP = eb1.MAX_RAISE_PER_B0
CHANNELS = ("strength_a", "strength_b")


@dataclass(frozen=True)
class Act:
    after: float
    """Seconds after the act before."""
    wheel: bool
    """The user turns the wheel (else the program asks for new strengths)."""
    a: int | None
    b: int | None


acts = st.builds(
    Act,
    after=st.one_of(st.floats(0.0, 0.25), st.just(0.0)),
    wheel=st.booleans(),
    a=st.one_of(st.none(), st.integers(0, 60)),
    b=st.one_of(st.none(), st.integers(0, 60)),
)
# The program starts the session at a good strength, so that the wheel mostly turns
# while the host ramps (with a raise on its way, on a slow radio).
start = st.builds(
    Act, after=st.just(0.0), wheel=st.just(False), a=st.integers(20, 60), b=st.integers(20, 60)
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    delay=st.sampled_from([0.0, 0.02, 0.08, 0.15]),
    script=st.tuples(start, st.lists(acts, min_size=1, max_size=10)).map(lambda s: [s[0], *s[1]]),
)
def test_the_wheel_is_the_ceiling_and_the_ramp_holds(delay: float, script: list[Act]) -> None:
    rows, turns = run_virtual(play(delay, script))
    for ch, channel in enumerate(CHANNELS):
        values = [(i, t, value) for i, t, name, value in rows if name == channel]
        words: list[tuple[int, int]] = []
        for at, turned in turns:
            word = turned[ch]
            if word is not None:
                words.append((at, word))
        for (at, word), upto in itertools.zip_longest(words, [w[0] for w in words[1:]]):
            after = [v for i, _, v in values if i >= at and (upto is None or i < upto)]
            above = [v for v in after if v > word]
            assert len(above) <= 1, (channel, word, after)
            assert all(v <= word + STEP for v in above), (channel, word, after)
        # Rule 2 between turns: any two of the unit's values within 100 ms.
        for (i, t_i, v_i), (j, t_j, v_j) in itertools.combinations(values, 2):
            if t_j - t_i >= 0.1 - 1e-9:
                continue
            if any(i < at <= j for at, _ in words):
                continue
            assert v_j - v_i <= STEP, (channel, (t_i, v_i), (t_j, v_j))


Row = tuple[int, float, str, int]
"""One of the unit's recorded changes: its position in the record, time, channel, value."""
Turn = tuple[int, tuple[int | None, int | None]]
"""A turn of the wheel: the position of the first row after it, and the word per channel
(None: that channel did not change)."""


async def play(delay: float, script: list[Act]) -> tuple[list[Row], list[Turn]]:
    """Run the script; the unit's record and the turns of its wheel."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    turns: list[tuple[int, tuple[int | None, int | None]]] = []
    target = (0, 0)
    async with connected(faults=LinkFaults(delay=delay), recorder=recorder) as (
        driver,
        firmware,
        link,
    ):
        start = len(recorder.rows)
        for act in script:
            await asyncio.sleep(act.after)
            if act.wheel:
                before = firmware.strengths
                at = len(recorder.rows)
                firmware.turn_wheel(act.a, act.b, loop.time())
                link.wake()
                # A turn that changes nothing (to 0 at 0, past the soft limit at it) sends
                # no B1: the host cannot hear it, and it is no word of the user's.
                now = firmware.strengths
                changed = tuple(now[i] if now[i] != before[i] else None for i in (0, 1))
                turns.append((at, (changed[0], changed[1])))
            else:
                target = (
                    target[0] if act.a is None else act.a,
                    target[1] if act.b is None else act.b,
                )
                await driver.apply(out(*target))
        await asyncio.sleep(1.0)
        rows = [
            (i, float(str(row["t"])), str(row["channel"]), int(str(row["value"])))
            for i, row in enumerate(recorder.rows)
            if i >= start and row["channel"] in CHANNELS
        ]
    return rows, [(max(at, start), word) for at, word in turns]
