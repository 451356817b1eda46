"""A belt, a pillow, an EB1 and a Coyote V2 run one program in sync (issue 14, part 1).

Once through ``massaged run --simulate`` in this process, once through the daemon with
the simulator as a process of its own. Both are judged on the simulator's recording
only: every device switches on and off at the program's times (within a tolerance
that covers timer jitter on a shared machine), the Coyote V2's strengths never pass
the profile's cap nor its ramp, and everything is at zero at the end.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.profiles import KindCaps, Profile
from controller.store import Store
from devices.capabilities import DeviceKind
from devices.kinds import kind_spec
from devices.outputs import BeltOutput, ButterflyOutput, Output, PillowOutput
from devices.protocols import coyote_v2 as cv2
from programs.loader import load_program
from programs.render import render
from programs.timeline import SessionPlan
from simulator.recording import read_recording
from tests.daemon_processes import Setup, simulator_beside

SPEED = 6.0
"""Program seconds per wall second: the 29 s program plays in about 5 s."""
JITTER_S = 0.3
"""Wall seconds a switch may come early or late (timers and scheduling on 2 shared cores)."""
TOLERANCE = max(0.5, JITTER_S * SPEED)
"""The same, in program seconds: what the recording is judged against."""
EMS_CAP = 0.1
"""The profile's butterfly cap: strength 20 of 200, well below what the program asks."""
SPECS = ("belt", "pillow", "butterfly", "coyote")

PROGRAM = """
id = "four-in-sync"
title = "Four devices in sync"
audience = "adult"
max_duration = 30
description = "Pulses on the belt and the butterflies, the pillow off in the middle step."
cites = "none: a test program"

[[steps]]
technique = "stroking"
zone = "collar_zone"
repetitions = 2
intensity = 0.5
label = "Strokes"

[[steps]]
technique = "circular"
zone = "shoulders"
repetitions = 1
intensity = 0.5
label = "Circles"

[[steps]]
technique = "vibration"
zone = "collar_zone"
duration_s = 6
intensity = 0.6
label = "Vibration"

[[steps]]
technique = "stroking"
zone = "collar_zone"
repetitions = 1
intensity = 0.4
label = "Strokes again"
"""

Rows = list[dict[str, Any]]
Switches = list[tuple[float, bool]]


# -- what the program says --------------------------------------------------------------


def is_on(output: Output) -> bool:
    """Whether a device should put anything out (heat aside: this program has none)."""
    if isinstance(output, BeltOutput):
        return any(output.levels)
    if isinstance(output, PillowOutput):
        return output.speed > 0
    assert isinstance(output, ButterflyOutput)
    return any(ch.strength > 0 and ch.intensity > 0 for ch in (output.a, output.b))


def planned(plan: SessionPlan, device: str) -> Switches:
    """(program time, on) at each change of a device's planned output."""
    switches: Switches = []
    for cue in plan.timelines[device].cues:
        on = is_on(cue.output)
        if not switches or switches[-1][1] != on:
            switches.append((cue.t, on))
    return switches


# -- what the devices did -------------------------------------------------------------


def recorded(rows: Rows, device: str) -> Switches:
    """(recording time, on) at each change of what a device physically put out."""
    state: dict[str, Any] = {}
    switches: Switches = []
    for row in rows:
        if row["device"] != device:
            continue
        state[row["channel"]] = row["value"]
        if row["kind"] == "butterfly":
            # What the body feels: strength with a running waveform.
            on = any(state.get(c) for c in ("output_a", "output_b"))
        elif row["kind"] == "belt":
            on = any(v for c, v in state.items() if c.startswith("motor"))
        else:
            on = bool(state.get("speed"))
        if (switches[-1][1] if switches else False) != on:
            switches.append((float(row["t"]), on))
    return switches


def state_at(switches: Switches, t: float) -> bool:
    on = False
    for at, value in switches:
        if at > t:
            break
        on = value
    return on


# -- the judgement ---------------------------------------------------------------------


def check_in_sync(rows: Rows, plan: SessionPlan) -> None:
    """Every device's outputs follow the program's times, within TOLERANCE."""
    devices = sorted(plan.timelines)
    assert {r["device"] for r in rows} == set(devices)
    plans = {d: planned(plan, d) for d in devices}
    done = {d: recorded(rows, d) for d in devices}
    for device in devices:
        assert done[device], f"{device} never put anything out"
    # The session's start on the recording's clock: each device's first switch-on less
    # its planned one. They agree within the tolerance: the four started together.
    offsets = {d: done[d][0][0] - next(t for t, on in plans[d] if on) for d in devices}
    start = statistics.median(offsets.values())
    for device, offset in offsets.items():
        assert abs(offset - start) <= TOLERANCE, f"{device} started {offset - start:+.2f} s off"
    for device in devices:
        switches = [(t - start, on) for t, on in done[device]]
        for t, on in plans[device][1:]:
            # Each planned switch happened, the same way, at its time.
            near = [at for at, value in switches if value == on and abs(at - t) <= TOLERANCE]
            what = "on" if on else "off"
            assert near, f"{device}: no switch {what} near {t:.2f} s; it did {switches}"
        # Between the switches, nothing on where the program says off (the margins
        # around each planned switch aside).
        edges = [t for t, _ in plans[device]]
        step = 0.05
        for i in range(math.ceil(plan.duration / step)):
            t = i * step
            if any(abs(t - e) <= TOLERANCE for e in edges) or state_at(plans[device], t):
                continue
            assert not state_at(switches, t), f"{device} on at {t:.2f} s, planned off"


def check_coyote(rows: Rows, coyote: str, speed: float) -> None:
    """The Coyote V2's strengths: within the cap, within the ramp, and worked."""
    cap = math.floor(cv2.MAX_STRENGTH * EMS_CAP)
    window = 0.1 * speed  # the ramp's 100 ms of wall time, on the recording's clock
    for channel in ("strength_a", "strength_b"):
        seen = [
            (float(r["t"]), int(r["value"]))
            for r in rows
            if (r["device"], r["channel"]) == (coyote, channel)
        ]
        values = [v for _, v in seen]
        assert max(values) <= cap, f"{channel} past the cap {cap}: {max(values)}"
        assert max(values) >= cap // 2, f"{channel} hardly ran: {max(values)}"
        for i, (t0, v0) in enumerate(seen):
            for t1, v1 in seen[i + 1 :]:
                # At most 5 up per 100 ms; one window of slack for the radio's jitter.
                windows = 1 + math.floor((t1 - t0 + window) / window)
                assert v1 - v0 <= cv2.MAX_RAISE_PER_100MS * windows, (
                    f"{channel}: {v0} -> {v1} in {(t1 - t0) / speed:.3f} s"
                )


def check_all_zero(rows: Rows) -> None:
    last: dict[tuple[str, str], Any] = {}
    for row in rows:
        last[(row["device"], row["channel"])] = row["value"]
    left_on = {k: v for k, v in last.items() if isinstance(v, int) and v}
    assert not left_on, f"still on at the end: {left_on}"


def plan_for(program: Path, served: dict[str, str]) -> SessionPlan:
    """The program rendered onto devices like the simulated ones (id -> kind)."""
    caps = {device: kind_spec(DeviceKind(kind)).preview for device, kind in served.items()}
    return render(load_program(program), caps)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    folder = tmp_path / "programs"
    folder.mkdir()
    path = folder / "four-in-sync.toml"
    path.write_text(PROGRAM)
    return path


def save_capped_profile(db: Path) -> None:
    with Store.open(db) as store:
        store.save_profile(Profile(name="capped", caps=KindCaps(butterfly=EMS_CAP)))


# -- in this process -----------------------------------------------------------------------


def test_four_devices_in_sync_in_process(
    tmp_path: Path, program: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, record = tmp_path / "db", tmp_path / "rec.jsonl"
    save_capped_profile(db)
    devices = [arg for spec in SPECS for arg in ("--sim-device", spec)]
    args = ["run", str(program), "--simulate", *devices, "--speed", f"{SPEED:g}"]
    args += ["--profile", "capped", "--record", str(record), "--db", str(db)]
    assert main([*args, "--no-display", "--well"]) == 0
    out = capsys.readouterr().out
    assert "session completed" in out

    rows: Rows = [dict(r) for r in read_recording(record)]
    served = {str(r["device"]): str(r["kind"]) for r in rows}
    assert served == {
        "belt-1": "belt",
        "pillow-1": "pillow",
        "butterfly-1": "butterfly",
        "butterfly-2": "butterfly",
    }
    check_in_sync(rows, plan_for(program, served))
    check_coyote(rows, "butterfly-2", SPEED)  # the fleet's second butterfly: the coyote spec
    check_all_zero(rows)
    with Store.open(db) as store:
        (session,) = store.list_sessions()
        assert session.devices == ("belt-1", "pillow-1", "butterfly-1", "butterfly-2")


# -- through the daemon, the simulator a process of its own ----------------------------


@pytest.fixture
def beside(program: Path) -> Iterator[Setup]:
    with simulator_beside("msd-4d-", SPECS, speed=SPEED) as s:
        s.env["MASSAGED_PROGRAMS_DIR"] = str(program.parent)
        yield s


def test_four_devices_in_sync_through_the_daemon(beside: Setup, program: Path) -> None:
    save_capped_profile(beside.folder / "data" / "massaged.db")
    daemon = beside.start("daemon", "--simulator", "--auto-pair", "--speed", f"{SPEED:g}")
    devices = beside.wait_devices_up(4)
    # Each butterfly was paired as the model it is, and so has its own driver.
    models = sorted(str(d.get("model")) for d in devices if d["kind"] == "butterfly")
    assert models == ["Coyote V2", "EB1"], devices
    answer = beside.api("run", {"program": "four-in-sync", "profile": "capped"})
    assert answer["status"] == "ok", answer
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = beside.api("status")["data"]
        if status["last_session"] and not status["session"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the session did not end")
    assert status["last_session"]["outcome"] == "completed", status["last_session"]
    time.sleep(0.3)  # the last zeroing writes reach the recording
    assert daemon.poll() is None

    rows: Rows = beside.rows()
    served = {d["id"]: d["kind"] for d in beside.served}
    coyote = next(d["id"] for d in beside.served if d.get("model") == "coyote_v2")
    check_in_sync(rows, plan_for(program, served))
    check_coyote(rows, coyote, SPEED)
    check_all_zero(rows)
