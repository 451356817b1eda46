"""What the benchmarks share: statistics, the JSON line, processes, a simulator server, a broker.

Run as a script (``python bench/_harness.py sim --device belt ...``) it is the
simulator server the benchmarks start in their own process: a
:class:`simulator.fleet.Fleet` on real endpoints, with a recorder that keeps
the raw monotonic receipt time of every output change and tracks when each
device last became quiet. The parent asks it for those over stdin/stdout,
one JSON object per line. Times are CLOCK_MONOTONIC seconds, which every
process on the machine shares, so a time taken in the benchmark and a receipt
time taken in the simulator compare directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Broker and find_mosquitto are re-exported: the benchmarks call h.Broker, h.find_mosquitto.
from simulator.broker import Broker as Broker
from simulator.broker import find_mosquitto as find_mosquitto
from simulator.firmware.base import Firmware
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
"""The repository root (the benchmarks start ``python -m controller`` from here)."""
HARNESS = Path(__file__).resolve()
START_TIMEOUT_S = 60.0
"""Longest wait for a process to come up (a loaded 2-core machine is slow, not broken)."""
STOP_TIMEOUT_S = 15.0
"""Longest wait for a process to exit after SIGTERM before it is killed."""
REPLY_LIMIT = 1 << 28
"""Longest reply line from the simulator server (row dumps of 256 devices are large)."""

Json = dict[str, Any]


# -- statistics and output ----------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolated between ranks."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def summarize_ms(seconds: Iterable[float]) -> Json:
    """n, p50, p99, max and mean in milliseconds of durations given in seconds."""
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(values[-1], 3),
        "mean_ms": round(sum(values) / len(values), 3),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base rounded, or None when either is missing or base is not positive."""
    if value is None or base is None or base <= 0:
        return None
    return round(value / base, 2)


def say(text: str) -> None:
    """One human-readable line (before the JSON line)."""
    print(text, flush=True)


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the running benchmark, so that its clean-up stops every process."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def run_benchmark(main: Coroutine[Any, Any, Json]) -> int:
    """Run a benchmark's main coroutine and print its JSON line; 130 when interrupted.

    What every benchmark needs first: warnings only on stderr, SIGTERM as a
    cancellation (so every process it started is stopped), and file descriptors
    for hundreds of simulated devices.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def prepared() -> Json:
        cancel_on_sigterm()
        raise_nofile_limit()
        return await main

    try:
        result = asyncio.run(prepared())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process it started is stopped", file=sys.stderr)
        return 130
    emit(result)
    return 0


def emit(result: Json) -> None:
    """The benchmark's one JSON line, last on stdout."""
    print(json.dumps(result, separators=(",", ":"), default=str), flush=True)


def fmt(stats: Json) -> str:
    """A summary as 'p50 x ms, p99 y ms, max z ms (n)'."""
    if not stats.get("n"):
        return "no samples"
    return (
        f"p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms, "
        f"max {stats['max_ms']:.3f} ms (n={stats['n']})"
    )


def machine() -> Json:
    """Where the figures come from: CPUs, CPU model, Python, load."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# -- CPUs and limits ------------------------------------------------------------


def cpus() -> set[int]:
    """The CPUs this process may run on."""
    return set(os.sched_getaffinity(0))


def pin(cpu: int | None, pid: int = 0) -> None:
    """Run a process (0: this one) on one CPU only; None leaves it alone."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


def unpin(allowed: set[int], pid: int = 0) -> None:
    """Let a process run on these CPUs again."""
    os.sched_setaffinity(pid, allowed)


def other_cpu(cpu: int) -> int:
    """Another CPU than cpu when there is one (the simulator's), else cpu itself."""
    rest = sorted(cpus() - {cpu})
    return rest[0] if rest else cpu


def raise_nofile_limit() -> None:
    """Open-file limit to the hard limit: 256 ptys need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- /proc ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


@dataclass
class CpuMeter:
    """CPU percent of a process over an interval, from /proc/<pid>/stat."""

    pid: int
    start_cpu: float = 0.0
    start_wall: float = 0.0
    rss_max_kib: int = 0

    def start(self) -> None:
        """The interval starts now."""
        self.start_cpu = cpu_seconds(self.pid)
        self.start_wall = time.monotonic()
        self.rss_max_kib = memory_kib(self.pid).get("VmRSS", 0)

    def sample(self) -> None:
        """Note the resident memory now (its maximum is reported)."""
        self.rss_max_kib = max(self.rss_max_kib, memory_kib(self.pid).get("VmRSS", 0))

    def stop(self) -> Json:
        """CPU percent of one core since start, and memory."""
        cpu = cpu_seconds(self.pid) - self.start_cpu
        wall = time.monotonic() - self.start_wall
        self.sample()
        mem = memory_kib(self.pid)
        return {
            "seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 3),
            "cpu_percent": round(100.0 * cpu / wall, 2) if wall > 0 else None,
            "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
            "rss_max_mb": round(self.rss_max_kib / 1024, 1),
            "rss_peak_mb": round(mem.get("VmHWM", 0) / 1024, 1),
        }


async def meter(pid: int, seconds: float, every: float = 1.0) -> Json:
    """CPU percent and memory of a process over seconds, sampling memory every second."""
    m = CpuMeter(pid)
    m.start()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(every, left))
        m.sample()
    return m.stop()


# -- a private place and processes ---------------------------------------------------


class Workspace:
    """A private temporary folder with the environment that points massaged into it."""

    def __init__(self, prefix: str = "massaged-bench-") -> None:
        # Short: Unix socket paths must stay under 108 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.env = {
            **os.environ,
            "MASSAGED_SIM_RADIO": str(self.radio),
            "MASSAGED_DATA_DIR": str(self.folder / "data"),
            "MASSAGED_CONFIG_DIR": str(self.folder / "config"),
            "MASSAGED_DAEMON_SOCKET": str(self.socket),
            "MASSAGED_PROGRAMS_DIR": str(self.folder / "programs"),
            # Any free port: a benchmark's daemon must not take (or fight for) the page's 8765.
            "MASSAGED_WEB_PORT": "0",
        }
        self.env.pop("MASSAGED_CONFIG", None)
        self.env.pop("NOTIFY_SOCKET", None)
        self._logs: list[IO[bytes]] = []
        self._compile()

    def _compile(self) -> None:
        """Byte-compile massaged into a cache, as an installed package is.

        Without it a machine with PYTHONDONTWRITEBYTECODE set (this one's sandbox)
        compiles every module of the project at every process start, and the CLI
        and start-up figures would measure the compiler. The caller's own cache
        ($PYTHONPYCACHEPREFIX, as ./dev test sets it) is used when there is one: it
        already holds the standard library and the dependencies, which a fresh
        private cache would make the first process of every benchmark compile again.
        """
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        if not self.env.get("PYTHONPYCACHEPREFIX"):
            self.env["PYTHONPYCACHEPREFIX"] = str(self.folder / "pycache")
        packages = [str(REPO / name) for name in ("controller", "devices", "programs", "simulator")]
        # One process: on a warm cache this only compares timestamps (workers cost more).
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *packages],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )

    @property
    def radio(self) -> Path:
        """The simulator's radio socket."""
        return self.folder / "radio.sock"

    @property
    def socket(self) -> Path:
        """The daemon's control socket."""
        return self.folder / "control.sock"

    def write_config(self, text: str) -> Path:
        """Write the daemon's config.toml."""
        folder = self.folder / "config"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / "config.toml"
        path.write_text(text)
        return path

    def write_program(self, program_id: str, text: str) -> Path:
        """Put a program file in the private program folder ($MASSAGED_PROGRAMS_DIR)."""
        folder = Path(self.env["MASSAGED_PROGRAMS_DIR"])
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{program_id}.toml"
        path.write_text(text)
        return path

    def log(self, name: str) -> IO[bytes]:
        """A log file in the workspace for a process's output (closed with the workspace)."""
        handle = (self.folder / f"{name}.log").open("ab")
        self._logs.append(handle)
        return handle

    def tail(self, name: str, lines: int = 30) -> str:
        """The end of a process's log, for an error message."""
        path = self.folder / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Close the logs and remove the folder."""
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


async def spawn(
    ws: Workspace, log_name: str, *args: str, cpu: int | None = None
) -> asyncio.subprocess.Process:
    """Start a process in the workspace's environment, its output to a log file."""
    log = ws.log(log_name)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=ws.env,
        cwd=str(REPO),
    )
    if cpu is not None:
        with contextlib.suppress(ProcessLookupError):
            pin(cpu, proc.pid)
    return proc


async def spawn_controller(
    ws: Workspace, log_name: str, *args: str, cpu: int | None = None
) -> asyncio.subprocess.Process:
    """``massaged ARGS`` (python -m controller) in the workspace."""
    return await spawn(ws, log_name, sys.executable, "-m", "controller", *args, cpu=cpu)


async def stop_process(
    proc: asyncio.subprocess.Process | None, *, sig: int = signal.SIGTERM
) -> int | None:
    """Signal a process, wait for it, kill it if it lingers; its exit code."""
    if proc is None:
        return None
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            logger.warning("process %d did not exit: killed", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode


async def wait_online(socket_path: Path, timeout: float = START_TIMEOUT_S) -> float:
    """Wait until the daemon answers on its control socket; the monotonic time it did."""
    from controller import control
    from devices.errors import MassagedError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(MassagedError, OSError, ValueError):
            answer = await control.call(socket_path, "status", timeout=2.0)
            if answer.get("status") == "ok":
                return time.monotonic()
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no daemon answered on {socket_path} within {timeout:g} s")


async def wait_devices_up(
    socket_path: Path, count: int, timeout: float = START_TIMEOUT_S, every: float = 0.05
) -> float:
    """Wait until the daemon has count devices, every link up; the monotonic time it did.

    Mostly a wait before a measurement, where being 50 ms late costs nothing and every poll
    costs the starting daemon a request; footprint's start-up figures pass a shorter every.
    """
    from controller import control
    from devices.errors import MassagedError

    deadline = time.monotonic() + timeout
    devices: list[Json] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(MassagedError, OSError, ValueError):
            answer = await control.call(socket_path, "devices", timeout=2.0)
            devices = answer.get("data") or []
            if len(devices) >= count and all(d.get("link") == "up" for d in devices):
                return time.monotonic()
        await asyncio.sleep(every)
    links = [(d.get("name"), d.get("link")) for d in devices]
    raise TimeoutError(f"{count} devices not up within {timeout:g} s: {links}")


async def wait_session_over(socket_path: Path, timeout: float = 15.0) -> None:
    """Wait until the daemon runs no session."""
    from controller import control

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await control.call(socket_path, "status", timeout=5.0)
        if (answer.get("data") or {}).get("session") is None:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the session did not end within {timeout:g} s")


def daemon_config(
    *, scan_timeout: float = 1.0, mqtt_port: int | None = None, extra: str = ""
) -> str:
    """A config.toml for a benchmark's daemon: short scans, MQTT on a local broker if given."""
    text = f'[daemon]\nscan_timeout = {scan_timeout}\nlog_level = "warning"\n'
    if mqtt_port is not None:
        text += (
            '\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\n'
            f"port = {mqtt_port}\nreconnect_min = 0.1\nreconnect_max = 1.0\n"
        )
    return text + extra


# -- the simulator server (child side) ---------------------------------------------------


class CaptureRecorder(Recorder):
    """Keeps raw receipt times of output changes and when each device last became quiet."""

    def __init__(self, channels: set[str] | None) -> None:
        super().__init__(None)
        self.keep_in_memory = False
        self.channels = channels
        self.captured: list[tuple[float, str, str, int | str]] = []
        self.firmware: dict[str, Firmware] = {}
        self.quiet_since: dict[str, float | None] = {}

    def attach(self, firmware: dict[str, Firmware], now: float) -> None:
        """Start tracking quiet per device (the firmware exists only after the fleet starts)."""
        self.firmware = firmware
        self.quiet_since = {name: now if fw.is_quiet else None for name, fw in firmware.items()}

    def record(self, now: float, device: str, kind: str, channel: str, value: int | str) -> None:
        """Note one change at monotonic time now (the bytes' arrival, for a host command)."""
        if self.channels is None or channel in self.channels:
            self.captured.append((now, device, channel, value))
        fw = self.firmware.get(device)
        if fw is None:
            return
        # _set_output has stored the value already: is_quiet sees this change.
        if fw.is_quiet:
            if self.quiet_since.get(device) is None:
                self.quiet_since[device] = now
        else:
            self.quiet_since[device] = None

    def answer(self, request: Json) -> Json:
        """One request from the parent: rows, quiet or clear."""
        command = request.get("cmd")
        if command == "rows":
            rows, self.captured = self.captured, []
            return {"rows": rows}
        if command == "clear":
            self.captured = []
            return {"ok": True}
        if command == "quiet":
            return {"quiet_since": dict(self.quiet_since)}
        return {"error": f"unknown command {command!r}"}


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=REPLY_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_sim(args: argparse.Namespace) -> int:
    """The simulator server: a fleet, its devices as JSON lines, then requests on stdin."""
    from simulator.fleet import Fleet, parse_spec

    raise_nofile_limit()
    pin(args.cpu)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    channels = set(args.channels.split(",")) if args.channels else None
    capture = CaptureRecorder(channels)
    fleet = Fleet([parse_spec(s) for s in args.device], radio_path=args.radio, recorder=capture)
    async with fleet:
        capture.attach({d.id: d.firmware for d in fleet.devices}, loop.time())
        out = sys.stdout
        for device in fleet.devices:
            out.write(json.dumps(device.describe()) + "\n")
        out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
        out.flush()
        reader = await _stdin_lines()
        stopping = loop.create_task(stop.wait())
        try:
            while True:
                reading = loop.create_task(reader.readline())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    break
                line = reading.result()
                if not line:
                    break  # the parent is gone: so are we
                reply = capture.answer(json.loads(line))
                out.write(json.dumps(reply, separators=(",", ":")) + "\n")
                out.flush()
        finally:
            stopping.cancel()
    return 0


# -- the simulator server (parent side) -----------------------------------------------


@dataclass
class SimServer:
    """The simulator server process, seen from a benchmark."""

    ws: Workspace
    specs: list[str]
    channels: set[str] | None = None
    cpu: int | None = None
    devices: list[Json] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> list[Json]:
        """Start the process and wait for its devices (on failure the process is stopped)."""
        args = [sys.executable, str(HARNESS), "sim", "--radio", str(self.ws.radio)]
        for spec in self.specs:
            args += ["--device", spec]
        if self.channels:
            args += ["--channels", ",".join(sorted(self.channels))]
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.ws.log("sim"),
            env=self.ws.env,
            cwd=str(REPO),
            limit=REPLY_LIMIT,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while True:
                    line = await self._readline()
                    data = json.loads(line)
                    if data.get("ready"):
                        break
                    self.devices.append(data)
        except BaseException:
            await self.close()
            raise
        return self.devices

    async def _readline(self) -> bytes:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator server ended:\n{self.ws.tail('sim')}")
        return line

    async def ask(self, command: str) -> Json:
        """One request to the server and its answer."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(json.dumps({"cmd": command}).encode() + b"\n")
            await self.proc.stdin.drain()
            async with asyncio.timeout(30.0):
                reply: Json = json.loads(await self._readline())
        return reply

    async def rows(self) -> list[tuple[float, str, str, int | str]]:
        """Captured output changes since the last call: (time, device, channel, value)."""
        reply = await self.ask("rows")
        return [(float(t), str(d), str(c), v) for t, d, c, v in reply["rows"]]

    async def quiet_since(self) -> dict[str, float | None]:
        """Per device: the monotonic time it became quiet, None while something is on."""
        reply = await self.ask("quiet")
        return {str(k): (None if v is None else float(v)) for k, v in reply["quiet_since"].items()}

    async def close(self) -> None:
        """End the server (EOF on stdin, then SIGTERM)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            async with asyncio.timeout(5.0):
                await proc.wait()
        except TimeoutError:
            await stop_process(proc)


def make_driver(desc: Json, radio: Path, **options: Any) -> Any:
    """A driver (not connected) for a device the simulator server described."""
    from devices.capabilities import DeviceKind
    from devices.kinds import make_device
    from simulator.ble.backend import SimBleakClient

    kind = DeviceKind(desc["kind"])
    if desc["link"] == "serial":
        return make_device(kind, desc["address"], transport="serial", name=desc["id"], **options)
    return make_device(
        kind,
        desc["address"],
        transport="ble",
        name=desc["id"],
        ble_backend=SimBleakClient,
        ble_kwargs={"radio": str(radio)},
        **options,
    )


def device_specs(count: int) -> list[str]:
    """3: the three kinds (serial belt, pillow, butterfly); any other count: serial belts."""
    if count == 3:
        return ["belt", "pillow", "butterfly"]
    return ["belt"] * count


def comma_list(text: str) -> list[str]:
    """'socket,http,' -> ['socket', 'http']: a command line's list of names."""
    return [part for part in text.split(",") if part]


def parse_counts(text: str) -> list[int]:
    """'3,64,256' -> [3, 64, 256]."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 1 or c > 1024 for c in counts):
        raise argparse.ArgumentTypeError(f"device counts must be 1..1024: {text!r}")
    return counts


# -- a broker of our own -----------------------------------------------------------------
# simulator.broker is the one launcher; the MQTT tests use it too.


def broker(ws: Workspace, binary: str, *, nodelay: bool = False) -> Broker:
    """A mosquitto on a free loopback port for one benchmark run (not started yet).

    Its config and log go in the workspace, beside the other processes' logs
    (ws.tail("mosquitto")) and removed with it; it gets the benchmarks' longer
    time-outs, for a loaded machine.
    """
    return Broker(
        binary,
        ws.folder,
        nodelay=nodelay,
        start_timeout=START_TIMEOUT_S,
        stop_timeout=STOP_TIMEOUT_S,
    )


def bridge_available() -> str | None:
    """Why the MQTT bridge cannot be benchmarked, or None when it can."""
    import importlib.util

    if importlib.util.find_spec("controller.mqtt.runtime") is None:
        return "controller.mqtt.runtime is missing (the daemon cannot start the bridge yet)"
    if find_mosquitto() is None:
        return "mosquitto is not installed"
    return None


# -- the script ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``_harness.py sim``: serve simulated devices for a benchmark (not for people)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    sim = sub.add_parser("sim", help="serve simulated devices; requests on stdin")
    sim.add_argument("--device", action="append", required=True, help="a device spec")
    sim.add_argument("--radio", type=Path, required=True, help="the radio socket")
    sim.add_argument("--channels", default="", help="capture only these channels (a,b,...)")
    sim.add_argument("--cpu", type=int, default=None, help="run on this CPU only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="sim: %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve_sim(args))


if __name__ == "__main__":
    sys.exit(main())
