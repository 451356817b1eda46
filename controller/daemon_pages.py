"""The daemon's commands for the web page: profiles, course, programs, pulse, and "now".

They are commands of the one API (controller.api), so the control socket and
MQTT offer them too, validated the same way; the page adds no rule of its own.
:class:`PagesMixin` is inherited by :class:`controller.daemon.Daemon`, whose
``handle`` finds each ``_cmd_<command>`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import api
from controller.errors import RequestError
from controller.profiles import (
    CONTRAINDICATIONS,
    DEFAULT_PROFILE,
    Profile,
    contraindication_message,
    parse_contraindication,
)
from devices.capabilities import Capabilities
from devices.errors import ConfigError, MassagedError
from devices.outputs import channel_maximum

if TYPE_CHECKING:
    from controller.session import SessionRunner, SessionSnapshot
    from controller.store import Store
    from controller.supervisor import DeviceSupervisor
    from controller.web.settings import WebSettings
    from programs.model import Program

logger = logging.getLogger(__name__)

PULSE_STOP_POLL_S = 0.05
"""How often a running pulse looks for an emergency stop (it lasts about a second)."""
_COLUMN = re.compile(r"\(column (\d+)\)")


class PagesMixin:
    """Commands the web page needs, on top of the daemon's own (see the module)."""

    # Set by Daemon.__init__ (declared here for the type checker).
    store: Store
    supervisor: DeviceSupervisor
    runner: SessionRunner | None
    session_program: Program | None
    default_profile: str
    ble_backend: Any
    ble_kwargs: dict[str, Any]
    radio_path: Path | None
    scan_timeout: float
    _estops: int

    if TYPE_CHECKING:

        @property
        def simulated(self) -> bool:
            """Defined by Daemon."""
            ...

        async def _follow_profile(self) -> None:
            """Defined by Daemon."""

        def _emit(self, kind: str, data: dict[str, Any]) -> None:
            """Defined by Daemon."""

    # -- the web page's server ------------------------------------------------------------

    async def start_web(self) -> None:
        """Serve the [web] page; a port in use (or any bind error) is one warning, not an end."""
        settings: WebSettings | None = getattr(self, "web_settings", None)
        if settings is None or not settings.enabled:
            return
        from controller.web.server import WebServer

        server = WebServer(self, settings, state_dir=Path(self.store.path).parent)
        try:
            await server.start()
        except MassagedError as err:
            # The devices and every other front end work without the page: keep running.
            logger.warning("web page not served: %s", err)
            return
        self.__dict__["_pages_web"] = server

    async def close_web(self) -> None:
        """Stop serving the page: every socket closed, no task left running."""
        server = self.__dict__.pop("_pages_web", None)
        if server is not None:
            await server.close()

    @property
    def web_url(self) -> str | None:
        """The page's address while it is served, else None."""
        server = self.__dict__.get("_pages_web")
        return None if server is None else str(server.url)

    # -- state the mixin keeps (Daemon.__init__ knows nothing of it) -------------------

    def _well_answers(self) -> dict[tuple[str, date], bool]:
        """Today's "are you well?" answers by (profile, local day); memory only."""
        found: dict[tuple[str, date], bool] | None = self.__dict__.get("_pages_well")
        if found is None:
            found = self.__dict__["_pages_well"] = {}
        return found

    def _pulse_lock(self) -> asyncio.Lock:
        lock: asyncio.Lock | None = self.__dict__.get("_pages_pulse_lock")
        if lock is None:
            lock = self.__dict__["_pages_pulse_lock"] = asyncio.Lock()
        return lock

    # -- profiles ----------------------------------------------------------------------

    async def _cmd_profiles(self, _: api.Request) -> dict[str, Any]:
        profiles = await asyncio.to_thread(self.store.list_profiles)
        if not any(p.name == DEFAULT_PROFILE.name for p in profiles):
            profiles.insert(0, DEFAULT_PROFILE)
        today = datetime.now().date()
        return {
            "default": self.default_profile,
            "profiles": [profile_data(p, today) for p in profiles],
            "contraindications": [
                {
                    "name": item.value,
                    "reason": info.reason,
                    "source": info.source,
                    "ems_only": info.ems_only,
                }
                for item, info in CONTRAINDICATIONS.items()
            ],
        }

    async def _cmd_profile_set(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.ProfileSetRequest)
        current = await asyncio.to_thread(self.store.find_profile, request.name)
        base = current or DEFAULT_PROFILE.updated(name=request.name)
        changes: dict[str, Any] = {}
        if request.audience is not None:
            changes["audience"] = request.audience
        if request.caps is not None:
            changes["caps"] = {**base.caps.model_dump(), **request.caps}
        if request.ems_max_raise_per_100ms is not None:
            changes["ems_max_raise_per_100ms"] = request.ems_max_raise_per_100ms
        if request.painful_side is not None:
            changes["painful_side"] = request.painful_side
        if request.contraindications is not None:
            items = {parse_contraindication(n) for n in request.contraindications}
            changes["contraindications"] = sorted(c.value for c in items)
        today = datetime.now().date()
        if request.today is not None:
            kept = {parse_contraindication(n) for n in request.today}
            changes["for_today"] = (
                {"day": today.isoformat(), "items": sorted(c.value for c in kept)} if kept else None
            )
        if request.complex_osteochondrosis is not None:
            changes["complex_osteochondrosis"] = request.complex_osteochondrosis
        try:
            profile = base.updated(**changes)
        except ValueError as err:  # pydantic's ValidationError: one line naming the field
            from pydantic import ValidationError

            from controller.profiles import describe_validation_error

            if isinstance(err, ValidationError):
                raise RequestError(
                    describe_validation_error(err, "profile", "profile_set: ")
                ) from None
            raise
        await asyncio.to_thread(self.store.save_profile, profile)
        # A running session of this profile takes lowered caps at once (never a raise).
        await self._follow_profile()
        self._emit("profile", {"name": profile.name})
        return profile_data(profile, today)

    # -- the course and today's check ---------------------------------------------------

    def _profile_name(self, name: str | None) -> str:
        return name or self.default_profile

    async def _cmd_course(self, request: api.Request) -> dict[str, Any]:
        from controller.courses import (
            COURSE_SESSIONS,
            REST_AFTER_S,
            after_session_advice,
            course_status,
        )
        from controller.readiness import questions

        assert isinstance(request, api.ProfileRequest)
        name = self._profile_name(request.profile)
        profile = await asyncio.to_thread(self.store.get_profile, name)
        today = datetime.now().date()
        progress = await asyncio.to_thread(course_status, self.store, name, today=today)
        course: dict[str, Any] | None = None
        if progress is not None:
            course = {
                "sessions": progress.course.sessions,
                "every_days": progress.course.every_days,
                "started_at": progress.course.started_at.isoformat(),
                "completed": progress.completed,
                "remaining": progress.remaining,
                "last_session": _iso(progress.last_session),
                "next_due": _iso(progress.next_due),
                "due_now": progress.due_now,
                "overdue": progress.overdue,
                "done": progress.done,
            }
        sessions = await asyncio.to_thread(
            self.store.list_sessions, 5, profile=name, simulated=False
        )
        last_end = next((s.ended_at for s in sessions if s.ended_at is not None), None)
        rest_until = None
        if last_end is not None:
            until = last_end + timedelta(seconds=REST_AFTER_S)
            rest_until = until.isoformat() if until > datetime.now(UTC) else None
        asked = await asyncio.to_thread(questions, profile, self.store, simulated=self.simulated)
        return {
            "profile": name,
            "course_sessions": COURSE_SESSIONS,
            "course": course,
            "rest_after_s": REST_AFTER_S,
            "rest_until": rest_until,
            "last_session_end": None if last_end is None else last_end.isoformat(),
            "well_today": self._well_answers().get((name, today)),
            "today_contraindications": [
                {"name": c.value, "reason": contraindication_message(c)}
                for c in sorted(profile.today_contraindications(today), key=str)
            ],
            "questions": [
                {"confirm": q.confirm.value, "reason": q.reason, "prompt": q.prompt} for q in asked
            ],
            "advice": after_session_advice(profile.audience),
        }

    async def _cmd_well_today(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.WellTodayRequest)
        name = self._profile_name(request.profile)
        await asyncio.to_thread(self.store.get_profile, name)  # a typo is refused here
        today = datetime.now().date()
        answers = self._well_answers()
        # Only today's answers are worth keeping: yesterday's "well" says nothing of today.
        for key in [k for k in answers if k[1] != today]:
            del answers[key]
        answers[(name, today)] = request.well
        advice = (
            "a session may start: the run request still carries well_today = true"
            if request.well
            else "the method: if you feel unwell, it is better to postpone the session"
        )
        return {"profile": name, "day": today.isoformat(), "well": request.well, "advice": advice}

    # -- programs ------------------------------------------------------------------------

    async def _cmd_program(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.ProgramRequest)
        from programs import library

        source = await asyncio.to_thread(library.get, request.name)
        devices = self._plot_devices()
        data = await asyncio.to_thread(program_data, source.program, source.builtin, devices)
        try:
            # The file as written, so the page's editor can open it (or copy a built-in).
            data["text"] = await asyncio.to_thread(source.path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            data["text"] = None
        return data

    def _plot_devices(self) -> dict[str, Capabilities] | None:
        """The paired devices' capabilities, when known; else the preview devices (None)."""
        found: dict[str, Capabilities] = {}
        for name, entry in self.supervisor.devices.items():
            with contextlib.suppress(MassagedError):
                found[name] = entry.device.capabilities
        return found or None

    async def _cmd_program_check(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.ProgramCheckRequest)
        from programs.errors import ProgramError
        from programs.loader import parse_program

        try:
            program = await asyncio.to_thread(parse_program, request.text, source="program")
        except ProgramError as err:
            return {"valid": False, "error": str(err), "issues": issue_data(err, request.text)}
        return {"valid": True, "program": summary(program), "issues": []}

    async def _cmd_program_save(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.ProgramSaveRequest)
        from programs import ProgramError, library
        from programs.ids import SLUG_PATTERN
        from programs.loader import parse_program

        if not re.match(SLUG_PATTERN, request.name):
            raise RequestError(
                f"program_save: name {request.name!r} is not a program id "
                "(lower-case letters, digits and '-')"
            )
        folder = library.user_dir()
        if request.name in library.builtin_ids():
            raise ConfigError(f"{request.name!r} is a built-in program: choose another id")
        try:
            program = await asyncio.to_thread(parse_program, request.text, source=request.name)
        except ProgramError as err:
            # One line, each issue at its place in the text (as program_check shows them).
            where = [
                (f"line {i['line']}: " if i["line"] else "") + str(i["message"])
                for i in issue_data(err, request.text)
            ]
            raise ConfigError(f"{request.name}: not saved: {'; '.join(where)}") from None
        if program.id != request.name:
            raise ConfigError(
                f"{request.name}: id in the file is {program.id!r}: the file name and id must match"
            )
        path = await asyncio.to_thread(_write_atomic, folder, f"{request.name}.toml", request.text)
        logger.info("program %s saved to %s", request.name, path)
        self._emit("program", {"name": request.name, "saved": True})
        return {"name": request.name, "path": str(path), "program": summary(program)}

    # -- pairing help --------------------------------------------------------------------

    async def _cmd_pulse(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.PulseRequest)
        runner = self.runner
        if runner is not None and runner.state.value != "ended":
            raise ConfigError("a session is running: stop it before pulsing a device")
        lock = self._pulse_lock()
        if lock.locked():
            raise ConfigError("a pulse is already being sent: wait a second")
        async with lock:
            if request.name is not None:
                return await self._pulse_paired(request.name)
            assert request.address is not None
            return await self._pulse_found(request.address, request.kind)

    async def _pulse_paired(self, name: str) -> dict[str, Any]:
        from controller.pairing import PULSE_SECONDS

        entry = self.supervisor.devices.get(name)
        if entry is None:
            raise ConfigError(f"no paired device {name!r}")
        if entry.in_session:
            raise ConfigError(f"{name} is in a session: stop it first")
        if entry.link != "up":
            raise MassagedError(f"{name} is not connected (link {entry.link})")
        await self._pulse_watching_stops(entry.device)
        return {"name": name, "pulsed": True, "seconds": PULSE_SECONDS}

    async def _pulse_found(self, address: str, kind: str | None) -> dict[str, Any]:
        from controller import pairing
        from devices.discovery import scan

        if any(
            e.record.address.upper() == address.upper() for e in self.supervisor.devices.values()
        ):
            raise ConfigError(f"{address} is paired: pulse it by its name")
        found = None
        if kind is None:
            results = await scan(self.scan_timeout, radio_path=self.radio_path)
            found = next((f for f in results if f.address.upper() == address.upper()), None)
            if found is None:
                raise ConfigError(f"{address} was not found: give its kind, or scan again")
        device_kind = pairing.kind_of(found, kind, address)
        device, _caps = await pairing.identify(
            device_kind,
            address,
            transport=pairing.transport_for(address, found),
            model=pairing.model_of(found, device_kind),
            ble_backend=self.ble_backend,
            ble_kwargs=self.ble_kwargs,
        )
        try:
            await self._pulse_watching_stops(device)
        finally:
            await device.close()
        return {"address": address, "kind": device_kind.value, "pulsed": True}

    async def _pulse_watching_stops(self, device: Any) -> None:
        """The confirmation pulse, cut short (device stopped) by an emergency stop."""
        from controller.pairing import confirmation_pulse

        estops = self._estops
        task = asyncio.get_running_loop().create_task(confirmation_pulse(device), name="pulse")
        try:
            while not task.done():
                if self._estops != estops:
                    # An emergency stop reaches a device the supervisor does not hold too.
                    task.cancel()
                    break
                await asyncio.wait({task}, timeout=PULSE_STOP_POLL_S)
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._estops != estops:
            raise MassagedError("pulse cut short by an emergency stop")

    # -- the Now page ----------------------------------------------------------------------

    def page_now(self, snap: SessionSnapshot | None = None) -> dict[str, Any] | None:
        """The running session for the Now page: step, technique, count, time left, outputs.

        snap: the runner's snapshot when the caller has just taken one.
        """
        runner = self.runner
        if runner is None or runner.state.value == "ended":
            return None
        if snap is None:
            snap = runner.snapshot()
        plan = runner.plan
        span = plan.steps[snap.step_index] if snap.step_index is not None else None
        count = None
        program = self.session_program
        if span is not None and program is not None and program.id == plan.program_id:
            # The program the session started with: no look-up (a file read, a glob) on
            # every status, and the count stays that of what runs if the file changes.
            count = step_count(program, span.index, span.start, span.end, snap.elapsed)
        return {
            "program": snap.program_id,
            "title": snap.title,
            "state": snap.state.value,
            "paused": snap.state.value == "paused",
            "pause_reasons": list(snap.pause_reasons),
            "step": snap.step_index,
            "step_total": snap.step_count,
            "technique": span.technique if span else None,
            "zone": span.zone if span else None,
            "label": snap.step_label,
            "count": count,
            "elapsed": round(snap.elapsed, 2),
            "time_left": round(snap.remaining, 2),
            "duration": round(snap.duration, 2),
            "scale": snap.scale,
            "gentler_factor": snap.gentler_factor,
            "gentler_presses": snap.gentler_presses,
            "devices": {
                name: {
                    "kind": d.kind.value,
                    "state": d.state.value,
                    "link": d.link,
                    "outputs": self._levels(name, d.output),
                }
                for name, d in snap.devices.items()
            },
        }

    def page_outputs(self) -> dict[str, dict[str, float]]:
        """Every paired device's outputs now, each channel 0..1 (the Now page's bars)."""
        from controller.session import output_channels

        levels: dict[str, dict[str, float]] = {}
        for name, entry in self.supervisor.devices.items():
            with contextlib.suppress(MassagedError):
                levels[name] = self._levels(name, output_channels(entry.device.output))
        return levels

    def _levels(self, name: str, channels: dict[str, int | str]) -> dict[str, float]:
        caps = None
        entry = self.supervisor.devices.get(name)
        if entry is not None:
            with contextlib.suppress(MassagedError):
                caps = entry.device.capabilities
        return normalized(channels, caps)


# -- pure helpers ---------------------------------------------------------------------------


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def profile_data(profile: Profile, today: date) -> dict[str, Any]:
    """A profile as the page shows it: its fields and what each contraindication means."""
    data = profile.model_dump(mode="json")
    data["contraindication_reasons"] = {
        c.value: contraindication_message(c) for c in profile.contraindications
    }
    data["today"] = sorted(c.value for c in profile.today_contraindications(today))
    return data


def step_count(
    program: Program, index: int, start: float, end: float, elapsed: float
) -> dict[str, Any] | None:
    """Movements of the running step: {"technique", "done", "current", "total"}; None for a rest."""
    if not 0 <= index < len(program.steps):
        return None
    step = program.steps[index]
    total = step.movement_count
    if total <= 0 or end <= start:
        return None
    per = (end - start) / total
    done = max(0, min(total, math.floor((elapsed - start) / per + 1e-9)))
    return {
        "technique": step.technique.value,
        "done": done,
        "current": min(total, done + 1),
        "total": total,
    }


def normalized(channels: dict[str, int | str], caps: Capabilities | None) -> dict[str, float]:
    """Output channels (recording names) as 0..1 of the device's maximum.

    An EMS channel is strength × waveform intensity, as in the plots (output_a, output_b);
    a pillow's direction is not a level and is left out.
    """
    out: dict[str, float] = {}
    # What this device reports it can do; else the protocol's maximum of the channel.
    tops: dict[str, int] = {}
    if caps is not None:
        tops.update({f"motor{m.index}": m.max_level for m in caps.motors})
        tops.update({f"strength_{c.name.lower()}": c.max_strength for c in caps.ems_channels})
        if caps.kneading is not None:
            tops["speed"] = caps.kneading.max_speed
    for key, value in channels.items():
        if isinstance(value, str):
            continue  # a direction, not a level
        top = tops.get(key) or channel_maximum(key) or 0
        if key == "heater":
            out[key] = 1.0 if value else 0.0
        elif key.startswith("motor") or key == "speed":
            out[key] = _fraction(value, top)
        elif key.startswith("strength_"):
            side = key.removeprefix("strength_")
            raw = channels.get(f"intensity_{side}", 100)
            intensity = raw if isinstance(raw, int | float) else 100
            out[f"output_{side}"] = _fraction(value * intensity / 100, top)
    return out


def _fraction(value: float, top: float) -> float:
    return round(min(1.0, max(0.0, value / top)), 4) if top > 0 else 0.0


def summary(program: Program) -> dict[str, Any]:
    """A program's id, title, audience, length and description."""
    return {
        "id": program.id,
        "title": program.title,
        "audience": program.audience.value,
        "duration": round(program.total_duration, 2),
        "max_duration_min": program.max_duration,
        "description": program.description,
        "cites": program.cites,
        "frequency": program.frequency,
        "steps": len(program.steps),
    }


def program_data(
    program: Program, builtin: bool, devices: dict[str, Capabilities] | None
) -> dict[str, Any]:
    """A program's steps mapped to the method, and per-device series for a plot (0..1)."""
    from programs.plot import plan_panels
    from programs.render import render

    plan = render(program, devices)
    steps = [
        {
            "index": span.index,
            "technique": step.technique.value,
            "zone": step.zone.value,
            "side": step.side.value,
            "label": span.label,
            "start": span.start,
            "end": span.end,
            "duration": round(step.duration, 2),
            "repetitions": step.repetitions,
            "movements": step.movement_count,
            "method_count": step.method_count,
            "amount": step.describe_amount(),
            "intensity": step.describe_intensity(),
            "heat": step.heat,
            "devices": None if step.devices is None else [k.value for k in step.devices],
            "cite": step.cite,
        }
        for span, step in zip(plan.steps, program.steps, strict=True)
    ]
    timeline: dict[str, Any] = {}
    for panel in plan_panels(plan):
        caps = plan.timelines[panel.device].capabilities
        top = float(caps.full_scale)
        timeline[panel.device] = {
            "kind": panel.kind,
            "series": {
                channel: _steps(
                    [
                        (t, (1.0 if v else 0.0) if channel == "heater" else _fraction(v, top))
                        for t, v in points
                    ]
                )
                for channel, points in panel.series.items()
            },
        }
    return {
        **summary(program),
        "builtin": builtin,
        "steps": steps,
        "timeline": {"duration": plan.duration, "devices": timeline},
    }


def _steps(points: list[tuple[float, float]]) -> list[list[float]]:
    """A step series without points that change nothing ([t, value]: value from t on)."""
    kept: list[list[float]] = []
    for t, value in points:
        if kept and kept[-1][1] == value:
            continue
        kept.append([round(t, 2), round(value, 3)])
    if points and kept[-1][0] != round(points[-1][0], 2):
        kept.append([round(points[-1][0], 2), round(points[-1][1], 3)])  # where the plot ends
    return kept


def issue_data(err: Any, text: str = "") -> list[dict[str, Any]]:
    """A ProgramError's issues with 1-based line and column where known (or found in text)."""
    issues = getattr(err, "issues", ()) or ()
    if not issues:
        return [{"message": str(err), "line": None, "column": None, "step": None, "field": None}]
    found = []
    for issue in issues:
        match = _COLUMN.search(issue.message)
        line, column = issue.line, int(match.group(1)) if match else None
        if line is None:
            line, column = locate(text, issue.step, issue.field)
        found.append(
            {
                "message": issue.message,
                "line": line,
                "column": column,
                "step": issue.step,
                "field": issue.field,
            }
        )
    return found


_STEP_HEADER = re.compile(r"^\s*\[\[\s*steps\s*\]\]")
_TABLE = re.compile(r"^\s*\[")


def locate(text: str, step: int | None, field: str | None) -> tuple[int | None, int | None]:
    """Where a program's field is set: (line, column), 1-based; the step's header when the
    field is not written there (a missing one); (None, None) when not found.

    The loader validates parsed data, which has no lines: a page shows the error at its
    place, so the TOML text is searched for the step's table and the key.
    """
    lines = text.splitlines()
    start, end = 0, len(lines)
    header: int | None = None
    if step is not None:
        headers = [i for i, line in enumerate(lines) if _STEP_HEADER.match(line)]
        if step >= len(headers):
            return None, None
        header = headers[step]
        start = header + 1
        following = [i for i in range(start, len(lines)) if _TABLE.match(lines[i])]
        end = following[0] if following else len(lines)
    else:
        tables = [i for i, line in enumerate(lines) if _TABLE.match(line)]
        end = tables[0] if tables else len(lines)
    if field:
        key = re.compile(rf"^(\s*){re.escape(field.split('.')[0])}\s*=")
        for i in range(start, end):
            if match := key.match(lines[i]):
                return i + 1, len(match.group(1)) + 1
    return (header + 1, 1) if header is not None else (None, None)


def _write_atomic(folder: Path, filename: str, text: str) -> Path:
    """Write text to folder/filename all at once (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
