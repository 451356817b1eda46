"""Driver for the VB1 vibration belt (docs/protocols/vb1-belt.md), over serial or BLE NUS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from devices.capabilities import Capabilities, DeviceKind, belt_motors
from devices.drivers._request import LinkDevice, RequestTracker
from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT
from devices.errors import (
    DeviceRefusedError,
    FrameError,
    IdentificationError,
    LinkError,
    LinkLostError,
    MassagedError,
    ProtocolError,
    SafetyError,
)
from devices.events import (
    LowBattery,
    Overheated,
    StatusReport,
    StopButtonPressed,
    WatchdogTripped,
)
from devices.links.base import Hex, Link
from devices.outputs import BeltOutput, Output
from devices.protocols import vb1

logger = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 0.200
"""Seconds between frames while anything is on: rule 4 allows 250 ms, we keep a margin."""
RETRY_DELAY = 0.050
"""Seconds the keepalive task waits after a failed PING or STOP before it looks again."""
STOP_TIMEOUT = 1.0
"""Seconds close() gives the best-effort STOP."""


def _command_name(cmd: int) -> str:
    try:
        return vb1.Command(cmd).name
    except ValueError:
        return f"0x{cmd:02x}"


def _nak_name(code: int) -> str:
    try:
        return vb1.NakCode(code).name
    except ValueError:
        return f"code {code}"


class VB1Driver(LinkDevice):
    """A VB1 belt: HELLO/INFO identification, SEQ-matched commands, a fed watchdog."""

    kind = DeviceKind.BELT

    def __init__(
        self,
        link: Link,
        *,
        name: str | None = None,
        write_target: str | None = None,
        answer_timeout: float = vb1.ANSWER_TIMEOUT,
        max_retries: int = vb1.MAX_RETRIES,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
    ) -> None:
        # write_target None: a serial port, or a BLE link that writes to NUS RX by default.
        super().__init__(link, name=name, write_target=write_target)
        if not 0 < keepalive_interval <= vb1.FEED_INTERVAL:
            raise ValueError(f"keepalive_interval must be in (0, {vb1.FEED_INTERVAL}]")
        self._keepalive_interval = keepalive_interval
        self._parser = vb1.FrameParser()
        self._seq = vb1.SequenceCounter()
        self._requests: RequestTracker[int, vb1.Frame] = RequestTracker(
            device=self.name, answer_timeout=answer_timeout, max_retries=max_retries
        )
        # One command at a time: a resent SET_LEVELS must never overtake a STOP.
        self._lock = asyncio.Lock()
        self._output = BeltOutput(levels=())
        self._stop_latched = False
        self._stop_due = False
        """A gap in service was found: the keepalive sends STOP at once."""
        self._last_tx = 0.0

    # -- state ----------------------------------------------------------------

    @property
    def output(self) -> BeltOutput:
        """What the driver last asked the belt for (zero after stop and stopping events)."""
        return self._output

    @property
    def stop_button_latched(self) -> bool:
        """True after the belt's own stop button: the host must not switch it on again."""
        return self._stop_latched

    @property
    def resends(self) -> int:
        """Commands resent for lack of an answer since the driver was made."""
        return self._requests.resends

    def clear_stop_button(self) -> None:
        """The user (not the host) agreed to run the belt again after its stop button."""
        self._stop_latched = False

    def reset_session(self) -> None:
        """A new session starts: forget the stop-button latch."""
        self.clear_stop_button()

    def _off(self) -> BeltOutput:
        motors = len(self._capabilities.motors) if self._capabilities else 0
        return BeltOutput.off(motors)

    # -- lifecycle ------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Capabilities:
        """Open the link, HELLO -> INFO, then STOP so every output is zero."""
        self._connected = False
        self._parser.reset()
        self._stop_latched = False
        self._stop_due = False

        async def handshake() -> Capabilities:
            caps = self._identify(await self._command(vb1.hello, "HELLO"))
            self._capabilities = caps
            await self._command(vb1.stop, "STOP")
            return caps

        caps = await self._open_and_identify(timeout, "VB1 belt", handshake)
        self._output = self._off()
        self._connected = True
        self._tasks.start(self._keepalive(), "keepalive")
        logger.info(
            "%s: VB1 belt, %d motors, heater %s, firmware %s, serial %s",
            self.name,
            len(caps.motors),
            caps.heater,
            caps.firmware,
            caps.serial,
        )
        return caps

    def _identify(self, answer: vb1.Frame) -> Capabilities:
        if answer.cmd == vb1.Command.ACK:
            # The vendor's vector shows an "ACK of HELLO", the command table says INFO;
            # without INFO we do not know the motor count, so we cannot drive the belt.
            raise IdentificationError(f"{self.name}: HELLO answered with ACK, not INFO")
        if answer.cmd != vb1.Command.INFO:
            raise IdentificationError(
                f"{self.name}: HELLO answered with {_command_name(answer.cmd)}, not INFO"
            )
        try:
            info = vb1.Info.decode(answer.payload)
            motors = belt_motors(info.motors)
        except (FrameError, ValueError) as exc:
            raise IdentificationError(f"{self.name}: bad INFO: {exc}") from exc
        if info.protocol != 1:
            raise IdentificationError(f"{self.name}: VB1 protocol version {info.protocol} is not 1")
        return Capabilities(
            kind=DeviceKind.BELT,
            model=f"VB1-{info.motors}",
            firmware=f"{info.firmware_major}.{info.firmware_minor}",
            serial=info.serial.strip("\x00 "),
            motors=motors,
            heater=info.heater,
        )

    stop_timeout = STOP_TIMEOUT

    async def _stop_on_close(self) -> None:
        await self._command(vb1.stop, "STOP")

    def _forget_outputs(self) -> None:
        self._output = self._off()

    def _forget_held_outputs(self) -> None:
        # The belt may still run at the held level (a gap shorter than its watchdog), or a
        # SET_LEVELS on its way may have reached it: STOP it at once, whatever we held.
        self._output = self._off()
        self._stop_due = self._connected

    # -- outputs --------------------------------------------------------------

    async def apply(self, output: Output) -> None:
        """SET_LEVELS, and SET_HEAT when the heater setting changes."""
        if not isinstance(output, BeltOutput):
            raise TypeError(f"a VB1 belt takes BeltOutput, not {type(output).__name__}")
        self._require_connected()
        caps = self.capabilities
        if len(output.levels) != len(caps.motors):
            raise ValueError(
                f"{self.name}: {len(output.levels)} levels for a belt of {len(caps.motors)} motors"
            )
        if output.levels and not 0 <= min(output.levels) <= max(output.levels) <= vb1.MAX_LEVEL:
            raise ValueError(f"{self.name}: levels must be 0..{vb1.MAX_LEVEL}: {output.levels}")
        if self._stop_latched and not output.is_zero:
            raise SafetyError(
                "the belt's own stop button was pressed: it stays off until the user clears it"
            )
        if output.heat and not caps.heater:
            # Refuse as the belt would (NAK UNSUPPORTED), without sending anything.
            raise DeviceRefusedError(
                "SET_HEAT refused: UNSUPPORTED (no heater fitted)",
                command=vb1.Command.SET_HEAT,
                code=vb1.NakCode.UNSUPPORTED,
                device=self.name,
            )
        levels = tuple(output.levels)
        generation = self._stamp(output)
        await self._command(
            lambda seq: vb1.set_levels(seq, levels), "SET_LEVELS", generation=generation
        )
        self._check_generation(generation)
        before = self._output
        self._output = BeltOutput(levels=levels, heat=self._output.heat)
        self._output_changed(before)
        if caps.heater and output.heat != self._output.heat:
            await self._command(
                lambda seq: vb1.set_heat(seq, output.heat), "SET_HEAT", generation=generation
            )
            self._check_generation(generation)
            before = self._output
            self._output = BeltOutput(levels=levels, heat=output.heat)
            self._output_changed(before)
        if self._stop_latched and not self._output.is_zero:
            # The stop button was pressed while our command was on the way: undo it.
            await self._stop_outputs()
            raise SafetyError("the belt's own stop button was pressed while switching it on")

    async def stop(self) -> None:
        """STOP: every motor 0 and the heater off; ends the lease."""
        self.revoke_lease()
        self._require_connected()
        await self._stop_outputs()

    def _check_generation(self, generation: int) -> None:
        """A gap while a command was on its way: its level is not held (the STOP is due)."""
        if generation != self._lease_gen:
            raise SafetyError(f"{self.name}: a gap in service while setting the belt: stopped")

    async def _stop_outputs(self) -> None:
        # Zero first: even unanswered, the belt's watchdog stops it within a second.
        self._output = self._off()
        self._stop_due = False
        await self._command(vb1.stop, "STOP")

    async def status(self) -> StatusReport:
        """GET_STATUS -> battery, temperature, flags and the current levels."""
        self._require_connected()
        answer = await self._command(vb1.get_status, "GET_STATUS")
        if answer.cmd != vb1.Command.STATUS:
            raise ProtocolError(
                f"{self.name}: GET_STATUS answered with {_command_name(answer.cmd)}"
            )
        status = vb1.Status.decode(answer.payload)
        outputs = {f"motor{i}": level for i, level in enumerate(status.levels, start=1)}
        outputs["heater"] = 1 if status.flags & vb1.StatusFlag.HEATER_ON else 0
        flags = frozenset(
            flag.name.lower() for flag in vb1.StatusFlag if status.flags & flag and flag.name
        )
        return StatusReport(
            device=self.name,
            kind=self.kind,
            battery=None if status.on_mains else status.battery,
            temperature=status.temperature,
            outputs=outputs,
            flags=flags,
        )

    # -- commands -------------------------------------------------------------

    async def _command(
        self, build: Callable[[int], vb1.Frame], what: str, *, generation: int | None = None
    ) -> vb1.Frame:
        """Send one command and return its answer; NAK -> DeviceRefusedError.

        generation: the lease generation of a command that puts something out or keeps
        it on (see LinkDevice._write); its resends are dropped after a gap too.
        """
        if not self._link_up:
            raise LinkError("not connected", device=self.name)
        async with self._lock:
            seq = self._seq.next()
            data = vb1.encode(build(seq))

            async def send() -> None:
                await self._write(data, generation=generation)
                self._last_tx = asyncio.get_running_loop().time()

            try:
                return await self._requests.request(seq, send, what=what)
            except LinkLostError as exc:
                await self._give_up(exc)
                raise

    # -- receiving ------------------------------------------------------------

    def _on_receive(self, source: str, data: bytes) -> None:
        # Serial chunks and BLE NUS notifications alike: one byte stream, one parser.
        debug = logger.isEnabledFor(logging.DEBUG)  # (the command's name costs a lookup)
        for frame in self._parser.feed(data):
            if debug:
                logger.debug(
                    "%s <- seq %d %s %s",
                    self.name,
                    frame.seq,
                    _command_name(frame.cmd),
                    Hex(frame.payload),
                )
            self._handle(frame)

    def _handle(self, frame: vb1.Frame) -> None:
        if frame.seq == vb1.EVENT_SEQ:
            if frame.cmd == vb1.Command.EVENT and len(frame.payload) == 1:
                self._on_event(frame.payload[0])
            else:
                logger.warning("%s: unexpected SEQ 0 frame %s", self.name, frame)
            return
        if frame.cmd == vb1.Command.NAK and len(frame.payload) >= 2:
            cmd, code = frame.payload[0], frame.payload[1]
            error = DeviceRefusedError(
                f"{_command_name(cmd)} refused: {_nak_name(code)}",
                command=cmd,
                code=code,
                device=self.name,
            )
            if not self._requests.reject(frame.seq, error):
                logger.debug("%s: NAK for SEQ %d nobody waits for", self.name, frame.seq)
            return
        if not self._requests.resolve(frame.seq, frame):
            # The answer to a frame that was already resent and answered.
            logger.debug("%s: late answer SEQ %d", self.name, frame.seq)

    def _on_event(self, code: int) -> None:
        if code == vb1.EventCode.WATCHDOG_STOP:
            self._output = self._off()
            self._emit(WatchdogTripped(self.name, self.kind))
        elif code == vb1.EventCode.OVERHEAT_STOP:
            self._output = self._off()
            self._emit(Overheated(self.name, self.kind))
        elif code == vb1.EventCode.LOW_BATTERY:
            self._emit(LowBattery(self.name, self.kind))
        elif code == vb1.EventCode.STOP_BUTTON:
            # Rule 6: the session on this belt ends; only the user may clear this.
            self._output = self._off()
            self._stop_latched = True
            self._emit(StopButtonPressed(self.name, self.kind))
        else:
            logger.warning("%s: unknown EVENT code %d", self.name, code)

    def _on_lost(self, error: LinkLostError) -> None:
        self._requests.fail_all(error)
        self._output = self._off()
        self._stop_due = False
        # The keepalive ends with the link (its task is cancelled too): let it see that now.
        self._wake.set()

    # -- keepalive --------------------------------------------------------------

    def _output_changed(self, before: BeltOutput) -> None:
        # Called after the new output is in place. Only a belt that was off needs its
        # keepalive woken: while something is on, the keepalive already sleeps until the
        # next feed or the lease's end and looks again then (a command just sent only
        # moves the next feed later). Waking it on every change cost a task switch and
        # a new timer per change.
        if before.is_zero and not self._output.is_zero:
            self._wake.set()

    async def _keepalive(self) -> None:
        """Feed the belt's watchdog while the lease runs and anything is on.

        The task wakes only when something is due: the next feed, the end of the
        lease, or a change that apply() or the lease reports. With every output at
        zero, or the lease revoked, it sleeps until woken. A lease that ran out
        unrevoked is a gap in service: the belt is stopped at once, not in a second.
        """
        loop = asyncio.get_running_loop()
        while self._connected:
            # Armed before looking: a change from here on wakes the sleep below at once.
            self._wake.arm()
            deadline: float | None = None
            try:
                self.check_lease()  # a lapsed lease: the output is forgotten, STOP due
                if self._stop_due:
                    logger.info("%s: gap in service, STOP", self.name)
                    try:
                        await self._stop_outputs()
                    except LinkLostError:
                        raise
                    except MassagedError:
                        self._stop_due = True  # the output reads zero already: try again
                        raise
                    continue
                if not self._output.is_zero and self.lease_valid:
                    due = self._last_tx + self._keepalive_interval
                    if loop.time() >= due:
                        await self._command(vb1.ping, "PING", generation=self._lease_gen)
                        continue
                    # renew_lease only moves the expiry later: waking at the old one and
                    # looking again is right.
                    deadline = min(due, self._lease_until)
                # Revoked: stay silent, the belt's watchdog stops it (rule 4); a renewed
                # lease wakes us.
            except LinkLostError:
                return
            except MassagedError as exc:
                logger.warning("%s: keepalive: %s", self.name, exc)
                deadline = loop.time() + RETRY_DELAY
            await self._wake.sleep(deadline)
