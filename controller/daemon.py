"""The daemon: owns the paired devices, runs sessions on request, serves every front end.

One process owns the devices. The command line reaches it over the control
socket (controller.control), home automation over MQTT (controller.mqtt);
both go through :meth:`Daemon.handle`, so every request is validated and
limited the same way whichever way it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import api
from controller.daemon_pages import PagesMixin
from controller.errors import RequestError, StoreError
from controller.session import SessionState
from controller.supervisor import DeviceSupervisor
from devices.errors import ConfigError, MassagedError, SafetyError

# Sessions (the runner, the safety layer, the programs) and pairing (discovery, BLE) are
# imported when first used: a daemon answers `status` without them, and one that never
# runs a session or pairs never pays for them.
if TYPE_CHECKING:
    from controller.profiles import Profile
    from controller.safety import SafetyLimits
    from controller.session import SessionRunner, SessionSnapshot
    from controller.store import DeviceRecord, Store
    from controller.web.settings import WebSettings
    from devices.drivers.base import Device
    from devices.events import DeviceEvent
    from programs.model import Program

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long a soft stop (fade) may take before the daemon falls back to an emergency stop."""

DaemonListener = Callable[[str, dict[str, Any]], None]
"""Called with (event type, data) for device, session and pairing events."""


class Daemon(PagesMixin):
    """Paired devices, one session at a time, and the API every front end calls."""

    def __init__(
        self,
        store: Store,
        *,
        ble_backend: Any = None,
        ble_kwargs: Mapping[str, Any] | None = None,
        radio_path: Path | None = None,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        scan_timeout: float = 5.0,
        default_profile: str = "default",
        speed: float = 1.0,
        web: WebSettings | None = None,
    ) -> None:
        self.store = store
        self.web_settings = web
        """The [web] page to serve from start() to close(); None: no page."""
        self.ble_backend = ble_backend
        self.ble_kwargs = dict(ble_kwargs or {})
        self.radio_path = radio_path
        """The simulator's radio, when the daemon drives simulated devices."""
        self.scan_timeout = scan_timeout
        self.default_profile = default_profile
        self.speed = speed
        self.supervisor = DeviceSupervisor(
            self._make_device,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            on_change=self._device_changed,
            on_event=self._device_event,
        )
        self.runner: SessionRunner | None = None
        self.session_program: Program | None = None
        """The running (or last) session's program, as loaded when it started."""
        self.session_source: str | None = None
        """Which front end started the running session ("cli", "mqtt", ...)."""
        self._session_task: asyncio.Task[None] | None = None
        self._listeners: list[DaemonListener] = []
        self.started_at = time.time()
        self.last_result: dict[str, Any] | None = None
        self._starting = False
        """A run request is being prepared (rendering, soft limits): one at a time."""
        self._estops = 0
        """Emergency stops so far; a session being prepared across one is not started."""

    @property
    def simulated(self) -> bool:
        """True on the simulator: its sessions are marked simulated and count toward no course."""
        return self.radio_path is not None

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start looking after every paired device."""
        try:
            closed = self.store.close_unfinished()
        except StoreError as err:
            # History cannot be written: sessions still run safely; the error is reported.
            logger.error("history: %s", err)
            closed = []
        if closed:
            logger.warning("history: %d session(s) left unfinished by a crash closed", len(closed))
        for record in self.store.list_devices():
            self.supervisor.add(record)
        logger.info("daemon started with %d paired device(s)", len(self.supervisor.devices))
        await self.start_web()  # daemon_pages: a port in use is a warning, not an end

    async def close(self) -> None:
        """Stop any session (soft, then hard), stop every device, close every link."""
        try:
            await self._end_session()
            await self.supervisor.close()
        finally:
            await self.close_web()

    async def _end_session(self) -> None:
        runner, task = self.runner, self._session_task
        if runner is None or task is None:
            return
        runner.stop()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.shield(task)
        except TimeoutError:
            logger.error("session did not stop in %.0f s: emergency stop", STOP_TIMEOUT_S)
            await runner.emergency_stop()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await task

    def add_listener(self, listener: DaemonListener) -> Callable[[], None]:
        """Call listener for every daemon event; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, data)
            except Exception:  # a front end's bug must not reach the devices
                logger.exception("daemon listener failed")

    # -- devices ----------------------------------------------------------------

    def _make_device(self, record: DeviceRecord) -> Device:
        from devices.kinds import kind_spec, make_device

        options: dict[str, Any] = {}
        if kind_spec(record.kind).ems:
            # EB1 daemon rule 1 (and the Coyote V2's host-held caps): the driver's own soft
            # limits come from the profile and the registry entry, so even a bug above the
            # driver cannot pass them. Between sessions the default profile's; every session
            # start writes its own profile's (SessionRunner), and a cap change at once.
            limits = _limits(self._profile(None), record.caps)
            soft = limits.max_units(record.kind)
            options["soft_limits"] = (soft, soft)
            options["max_raise_per_100ms"] = limits.ems_max_raise_per_100ms
        return make_device(
            record.kind,
            record.address,
            model=record.model,  # "" (a record from before models): the kind's default
            transport="serial" if record.transport == "serial" else "ble",
            name=record.name,
            ble_backend=self.ble_backend,
            ble_kwargs=self.ble_kwargs,
            **options,
        )

    def _device_changed(self, name: str) -> None:
        entry = self.supervisor.devices.get(name)
        if entry is not None:
            self._emit("device", entry.describe())

    def _device_event(self, name: str, event: DeviceEvent) -> None:
        data = {k: v for k, v in asdict(event).items() if k not in ("device", "kind")}
        self._emit("device_event", {"device": name, "event": type(event).__name__, **data})

    # -- the API ----------------------------------------------------------------------

    async def handle(self, command: str, request: api.Request) -> Any:
        """Carry out one validated request (see controller.api)."""
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise RequestError(f"unknown command {command!r}")
        result: Any = await handler(request)
        return result

    async def _cmd_status(self, _: api.Request) -> dict[str, Any]:
        runner = self.runner
        # One snapshot for both views of the session (each one walks every device).
        snap = None if runner is None or runner.state == SessionState.ENDED else runner.snapshot()
        return {
            "daemon": {"started_at": self.started_at, "speed": self.speed, "web": self.web_url},
            "devices": [e.describe() for e in self.supervisor.devices.values()],
            "session": None if snap is None else snapshot_data(snap, self.session_source),
            "last_session": self.last_result,
            "now": self.page_now(snap),  # daemon_pages: what the web page's Now shows
        }

    def session_status(self) -> dict[str, Any] | None:
        """The running session as JSON-able data, or None."""
        runner = self.runner
        if runner is None or runner.state == SessionState.ENDED:
            return None
        return snapshot_data(runner.snapshot(), self.session_source)

    async def _cmd_reload(self, _: api.Request) -> list[dict[str, Any]]:
        """Pick up what the command line changed in the store while the daemon ran:
        devices paired or unpaired, and a profile saved (``massaged profiles set``)."""
        records = {r.name: r for r in await asyncio.to_thread(self.store.list_devices)}
        for name in list(self.supervisor.devices):
            if name not in records and not self.supervisor.devices[name].in_session:
                await self.supervisor.remove(name)
        for name, record in records.items():
            if name not in self.supervisor.devices:
                self.supervisor.add(record)
        await self._follow_profile()
        return [e.describe() for e in self.supervisor.devices.values()]

    async def _follow_profile(self) -> None:
        """The running session's profile as now stored: lowered caps and a slower EMS ramp
        (and a child's heater time) reach every running device at once; nothing is raised."""
        runner = self.runner
        if runner is None or runner.state == SessionState.ENDED:
            return
        profile = await asyncio.to_thread(self.store.find_profile, runner.profile.name)
        if profile is None:
            return
        for name in runner.snapshot().devices:
            entry = self.supervisor.devices.get(name)
            caps = entry.record.caps if entry is not None else None
            await runner.tighten(name, _limits(profile, caps))

    async def _cmd_devices(self, _: api.Request) -> list[dict[str, Any]]:
        return [e.describe() for e in self.supervisor.devices.values()]

    async def _cmd_programs(self, _: api.Request) -> list[dict[str, Any]]:
        from programs import library

        found, _errors = library.list_programs()
        return [
            {
                "id": s.program.id,
                "title": s.program.title,
                "audience": s.program.audience,
                "builtin": s.builtin,
            }
            for s in found
        ]

    async def _cmd_history(self, request: api.Request) -> list[dict[str, Any]]:
        assert isinstance(request, api.HistoryRequest)
        rows = await asyncio.to_thread(self.store.list_sessions, request.limit)
        return [
            {
                "id": r.id,
                "program": r.program,
                "devices": list(r.devices),
                "profile": r.profile,
                "started_at": r.started_at.isoformat() if r.started_at else None,
                "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                "outcome": r.outcome.value if r.outcome else None,
                "gentler_presses": r.gentler_presses,
                "simulated": r.simulated,
            }
            for r in rows
        ]

    # -- sessions ------------------------------------------------------------------

    async def _cmd_run(self, request: api.Request, source: str = "api") -> dict[str, Any]:
        assert isinstance(request, api.RunRequest)
        if self.runner is not None and self.runner.state != SessionState.ENDED:
            raise ConfigError("a session is already running: stop it first")
        if self._starting:
            raise ConfigError("a session is already running (starting): stop it first")
        self._starting = True
        try:
            return await self._start_session(request, source)
        finally:
            self._starting = False

    async def _start_session(self, request: api.RunRequest, source: str) -> dict[str, Any]:
        from controller.session_setup import prepare_session
        from programs import library

        estops = self._estops
        # By id only: a front end never makes the daemon read an arbitrary file.
        program = library.get(request.program).program
        profile = self._profile(request.profile)
        names = request.devices or list(self.supervisor.devices)

        def find_devices() -> dict[str, Device]:
            unknown = [n for n in names if n not in self.supervisor.devices]
            if unknown:
                known = ", ".join(self.supervisor.devices) or "none paired"
                raise ConfigError(f"no paired device {', '.join(unknown)}; paired: {known}")
            return self.supervisor.connected(names)

        # The records as the session is prepared: a cap changed meanwhile is applied below.
        records = {n: e.record for n, e in self.supervisor.devices.items()}
        runner = await prepare_session(
            program,
            profile,
            find_devices,
            store=self.store,
            confirmed=lambda confirm: bool(getattr(request, confirm.value)),
            caps={n: r.caps for n, r in records.items()},
            speed=self.speed,
            scale=request.scale,
            simulated=self.simulated,
        )
        devices = runner.devices
        # The supervisor's own reconnect of a device that dropped meanwhile ends first.
        await self.supervisor.lend(devices)
        if self._estops != estops:
            # An emergency stop came while this session was being prepared: it wins.
            self.supervisor.give_back(devices)
            raise SafetyError("emergency stop while the session was starting: not started")
        # From here on a cap change reaches this runner (_cmd_set_caps); the devices' own
        # limits are written by the runner as the session starts, from this profile.
        self.runner = runner
        self.session_program = program
        self.session_source = source
        for name in devices:
            latest = self.supervisor.devices[name].record
            if latest.caps != records[name].caps:
                # A cap changed while this session was being prepared: it counts already.
                await runner.tighten(name, _limits(profile, latest.caps))
        runner.add_listener(
            lambda event: self._emit(
                "session_event",
                {"t": event.t, "type": event.kind, "device": event.device, **event.detail},
            )
        )
        # The session connects and reconnects its devices itself: their link as status,
        # the web page and MQTT availability report it follows (start, reconnected, ...).
        runner.add_listener(lambda _: self.supervisor.follow_links(devices))
        self._session_task = asyncio.get_running_loop().create_task(
            self._play(runner, list(devices)), name="session"
        )
        # Let the runner start (connect, history row) so the answer shows a running session.
        for _ in range(100):
            if runner.state != SessionState.READY or self._session_task.done():
                break
            await asyncio.sleep(0.01)
        if self._session_task.done() and (err := self._session_task.exception()) is not None:
            raise err if isinstance(err, MassagedError) else MassagedError(str(err))
        self._emit("session", {"state": "started", "program": program.id, "devices": names})
        return snapshot_data(runner.snapshot(), self.session_source)

    async def _play(self, runner: SessionRunner, names: list[str]) -> None:
        try:
            result = await runner.run()
            self.last_result = {
                "program": runner.plan.program_id,
                "outcome": result.outcome.value,
                "reason": result.reason,
                "elapsed": result.elapsed,
                "gentler_presses": result.gentler_presses,
                "session_id": result.session_id,
            }
            logger.info("session %s %s: %s", runner.plan.program_id, result.outcome, result.reason)
            self._emit("session", {"state": "ended", **self.last_result})
        except SafetyError as err:
            logger.warning("session refused: %s", err)
            raise
        except Exception:
            logger.exception("session failed")
            raise
        finally:
            self.supervisor.give_back(names)

    def _running(self) -> SessionRunner:
        runner = self.runner
        if runner is None or runner.state == SessionState.ENDED:
            raise ConfigError("no session is running")
        return runner

    async def _cmd_stop(self, _: api.Request) -> dict[str, Any]:
        runner = self._running()
        runner.stop()
        return {"state": "stopping"}

    async def _cmd_emergency_stop(self, _: api.Request) -> dict[str, Any]:
        # Always works: with no session, every connected device is stopped anyway.
        self._estops += 1
        runner = self.runner
        if runner is not None and runner.state != SessionState.ENDED:
            await runner.emergency_stop()
        await self.supervisor.stop_all()
        self._emit("session", {"state": "emergency_stop"})
        return {"state": "stopped"}

    async def _cmd_pause(self, _: api.Request) -> dict[str, Any]:
        self._running().pause()
        return {"state": "paused"}

    async def _cmd_resume(self, _: api.Request) -> dict[str, Any]:
        self._running().resume()
        return {"state": "running"}

    async def _cmd_gentler(self, _: api.Request) -> dict[str, Any]:
        factor = self._running().gentler()
        return {"gentler_factor": factor}

    async def _cmd_scale(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.ScaleRequest)
        return {"scale": self._running().set_scale(request.scale)}

    async def _cmd_heater(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.HeaterRequest)
        runner = self._running()
        # Only within a session: the heater is never left on with nobody's session running.
        runner.set_heat(request.device, request.on)
        return {"device": request.device, "heater": request.on}

    def _profile(self, name: str | None) -> Profile:
        return self.store.get_profile(name or self.default_profile)

    # -- pairing --------------------------------------------------------------------

    async def _cmd_scan(self, request: api.Request) -> list[dict[str, Any]]:
        assert isinstance(request, api.ScanRequest)
        from devices.discovery import scan

        found = await scan(request.timeout, radio_path=self.radio_path)
        paired = {e.record.address.upper() for e in self.supervisor.devices.values()}
        return [
            {
                "kind": f.kind.value,
                "model": f.model,
                "address": f.address,
                "name": f.name,
                "transport": f.transport,
                "rssi": f.rssi,
                "paired": f.address.upper() in paired,
            }
            for f in found
        ]

    async def _cmd_pair(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.PairRequest)
        record = await self.pair(
            request.address, name=request.name, kind=request.kind, window=request.window
        )
        return self.supervisor.devices[record.name].describe()

    async def pair(
        self,
        address: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        model: str = "",
        window: float = 30.0,
        pulse: bool = True,
    ) -> DeviceRecord:
        """Find, identify, pulse gently and register a device; then look after it.

        model: a scan's (Found.model) when the caller scanned; else the daemon's own scan's.
        """
        from controller import pairing
        from devices.discovery import scan

        if any(
            e.record.address.upper() == address.upper() for e in self.supervisor.devices.values()
        ):
            raise ConfigError(f"{address} is already paired")
        found = None
        deadline = asyncio.get_running_loop().time() + window
        while found is None and kind is None:
            results = await scan(min(self.scan_timeout, window), radio_path=self.radio_path)
            found = next((f for f in results if f.address.upper() == address.upper()), None)
            if found is None and asyncio.get_running_loop().time() >= deadline:
                raise ConfigError(f"{address} was not found within {window:g} s")
        device_kind = pairing.kind_of(found, kind, address)
        transport = pairing.transport_for(address, found)
        device, caps = await pairing.identify(
            device_kind,
            address,
            transport=transport,
            model=model or pairing.model_of(found, device_kind),
            ble_backend=self.ble_backend,
            ble_kwargs=self.ble_kwargs,
        )
        try:
            if pulse:
                await pairing.confirmation_pulse(device)
        finally:
            await device.close()
        record = pairing.record_device(
            self.store, device_kind, address, transport=transport, capabilities=caps, name=name
        )
        self.supervisor.add(record)
        logger.info("paired %s: %s at %s", record.name, caps.model, address)
        self._emit("pairing", {"state": "paired", "name": record.name, "address": address})
        return record

    async def _cmd_unpair(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.NameRequest)
        self._idle_device(request.name)
        await self.supervisor.remove(request.name)
        self.store.remove_device(request.name)
        self._emit("pairing", {"state": "unpaired", "name": request.name})
        return {"name": request.name}

    async def _cmd_rename(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.RenameRequest)
        from controller.pairing import check_name

        self._idle_device(request.name)
        check_name(request.new_name)
        record = self.store.update_device(request.name, name=request.new_name)
        self.supervisor.update_record(request.name, record)
        self._emit("pairing", {"state": "renamed", "name": request.name, "new": record.name})
        return self.supervisor.devices[record.name].describe()

    async def _cmd_set_caps(self, request: api.Request) -> dict[str, Any]:
        assert isinstance(request, api.SetCapsRequest)
        entry = self.supervisor.devices.get(request.name)
        if entry is None:
            raise ConfigError(f"no paired device {request.name!r}")
        caps = {**entry.record.caps, entry.record.kind.value: request.max_intensity}
        record = self.store.update_device(request.name, caps=caps)
        self.supervisor.update_record(request.name, record)
        runner = self.runner
        if entry.in_session and runner is not None and runner.state != SessionState.ENDED:
            # A lowered cap reaches the running session at once, on the host's clamp and
            # on the unit's own soft limit; a raised one waits for the next session.
            await runner.tighten(record.name, _limits(runner.profile, record.caps))
        elif entry.device.is_connected:
            from controller.safety import write_device_limits

            # Between sessions the unit's own soft limits follow at once (EB1; others
            # have none), from the default profile as at connect.
            limits = _limits(self._profile(None), record.caps)
            await write_device_limits(entry.device, limits)
        return self.supervisor.devices[record.name].describe()

    def _idle_device(self, name: str) -> None:
        entry = self.supervisor.devices.get(name)
        if entry is None:
            raise ConfigError(f"no paired device {name!r}")
        if entry.in_session:
            raise ConfigError(f"{name} is in a session: stop it first")


def _limits(profile: Profile, caps: Mapping[str, float] | None) -> SafetyLimits:
    """A profile's limits under a device's own caps (the safety layer, loaded when needed)."""
    from controller.safety import SafetyLimits

    return SafetyLimits.from_profile(profile, device_caps=caps)


def snapshot_data(snap: SessionSnapshot, source: str | None = None) -> dict[str, Any]:
    """A session snapshot as JSON-able data."""
    return {
        "program": snap.program_id,
        "title": snap.title,
        "state": snap.state.value,
        "step": snap.step_index,
        "step_label": snap.step_label,
        "step_count": snap.step_count,
        "elapsed": round(snap.elapsed, 2),
        "remaining": round(snap.remaining, 2),
        "duration": round(snap.duration, 2),
        "scale": snap.scale,
        "gentler_presses": snap.gentler_presses,
        "gentler_factor": snap.gentler_factor,
        "pause_reasons": list(snap.pause_reasons),
        "source": source,
        "devices": {
            name: {
                "kind": d.kind.value,
                "state": d.state.value,
                "link": d.link,
                "output": dict(d.output),
            }
            for name, d in snap.devices.items()
        },
    }


async def serve_until_signalled(daemon: Daemon, ready: Callable[[], object] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (every device stopped first)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if ready is not None:
            ready()
        await stop.wait()
        logger.info("shutting down: stopping every device first")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
