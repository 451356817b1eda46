"""Stop from the web page: the HTTP request and the WebSocket, against the control socket.

The simulator server (bench/_harness.py, its own process) notes, per device,
the monotonic time its outputs all became zero (the firmware's ``is_quiet``).
Each trial starts a session through the daemon's control socket, waits until
every device is on, takes the time, gives the stop through one front end and
waits until every device is quiet; the figure is the slowest device. The
front ends, in the same run on the same daemon and devices, in turn:

- ``socket``: ``controller.control.call`` on the control socket (the baseline);
- ``http``: ``POST /api/command/<stop>`` with the page's CSRF header, on a kept-alive
  connection, as the page sends it;
- ``ws``: ``{"command": "<stop>"}`` on an open ``/api/ws`` socket, as the page sends it.

The stop is ``emergency_stop`` by default (outputs to zero at once); ``--command stop``
measures the soft stop, whose fade is the same for every front end. The page's first
load is also measured: the bytes of index.html, its CSS and every JavaScript module it
imports (what a phone fetches before the page can work), as served by the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as h
from bench.stop import wait_on, wait_quiet

FRONT_ENDS = ("socket", "http", "ws")
COMMANDS = ("emergency_stop", "stop")
NOTHING = "none"
"""A channel name that matches nothing: the simulator server keeps only quiet times."""
_ASSET = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)
_IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[^'"();]*?\bfrom\s*)?|\bimport\s*\()\s*["']([^"']+)["']"""
)


class Page:
    """The web page's two ways to stop, kept open across trials as a phone keeps them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http: Any = None
        self.ws: Any = None
        self.csrf = ""
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Read the CSRF token, open the live socket and drain it in the background."""
        import aiohttp

        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self.http.get(self.url + "api/session") as response:
            self.csrf = (await response.json())["data"]["csrf"]
        self.ws = await self.http.ws_connect(self.url + "api/ws")
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = message.json()
            if data.get("type") == "answer":
                await self._answers.put(data)

    async def post(self, command: str) -> dict[str, Any]:
        """The stop as the page's button sends it over HTTP."""
        async with self.http.post(
            f"{self.url}api/command/{command}", json={}, headers={"X-CSRF-Token": self.csrf}
        ) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    async def send(self, command: str) -> dict[str, Any]:
        """The stop as the page sends it on its live socket; its answer."""
        await self.ws.send_json({"command": command})
        return await self._answers.get()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.http is not None:
            await self.http.close()


async def first_load(url: str) -> h.Json:
    """Bytes of the page a browser needs first: index.html, its CSS, every JS module imported."""
    import aiohttp

    sizes: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def fetch(address: str) -> str:
            async with http.get(address) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{address}: HTTP {response.status}")
            sizes[address.removeprefix(url) or "/"] = len(body)
            return body.decode("utf-8", errors="replace")

        index = await fetch(url)
        pending = [urljoin(url, ref) for ref in _ASSET.findall(index)]
        while pending:
            address = pending.pop()
            if not address.startswith(url) or address.removeprefix(url) in sizes:
                continue
            text = await fetch(address)
            if address.endswith(".js"):
                pending += [urljoin(address, ref) for ref in _IMPORT.findall(text)]
    kinds = {"html": 0, "css": 0, "js": 0, "other": 0}
    for path, size in sizes.items():
        kind = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else "html"
        kinds[kind if kind in kinds else "other"] += size
    return {"files": len(sizes), "bytes": sum(sizes.values()), "by_kind": kinds, "sizes": sizes}


async def trials_through(
    front: str, command: str, ws: h.Workspace, page: Page, sim: h.SimServer, args: Any
) -> tuple[list[float], int, int]:
    """Start and stop sessions through one front end; gaps, misses, trials not all on."""
    from controller import control

    gaps: list[float] = []
    missed = partial = 0
    loop = asyncio.get_running_loop()
    for _ in range(args.trials):
        answer = await control.call(ws.socket, "run", {"program": args.program, "well_today": True})
        if answer.get("status") != "ok":
            raise RuntimeError(f"the daemon refused the session: {answer.get('error')}")
        if await wait_on(sim) < len(sim.devices):
            partial += 1
        t0 = time.monotonic()
        if front == "socket":
            task = loop.create_task(control.call(ws.socket, command))
        elif front == "http":
            task = loop.create_task(page.post(command))
        else:
            task = loop.create_task(page.send(command))
        gap = await wait_quiet(sim, t0)
        async with asyncio.timeout(30.0):
            result = await task
        if result.get("status") != "ok":
            raise RuntimeError(f"{front} {command}: {result.get('error')}")
        if gap is None:
            missed += 1
        else:
            gaps.append(gap)
        await h.wait_session_over(ws.socket)
    return gaps, missed, partial


async def web_url(socket: Path) -> str:
    """The page's address from the daemon's status."""
    from controller import control

    answer = await control.call(socket, "status")
    url = ((answer.get("data") or {}).get("daemon") or {}).get("web")
    if not url:
        raise RuntimeError("the daemon serves no web page (see its log)")
    return str(url)


async def measure(args: argparse.Namespace) -> h.Json:
    """Every front end and stop command on one daemon with simulated devices."""
    ws = h.Workspace()
    sim = h.SimServer(ws, h.device_specs(args.devices), channels={NOTHING})
    daemon = None
    page: Page | None = None
    results: dict[str, dict[str, h.Json]] = {}
    try:
        await sim.start()
        # Port 0: any free port, so several runs (and the tests) never collide.
        ws.write_config(h.daemon_config(extra="\n[web]\nport = 0\n"))
        daemon = await h.spawn_controller(
            ws, "daemon", "daemon", "--simulator", "--auto-pair", "--speed", f"{args.speed:g}"
        )
        await h.wait_devices_up(ws.socket, args.devices)
        url = await web_url(ws.socket)
        load = await first_load(url)
        page = Page(url)
        await page.open()
        # Interleaved by trial block so a drift of the machine hits every front end alike.
        for command in args.commands:
            results[command] = {}
            for front in args.front_ends:
                gaps, missed, partial = await trials_through(front, command, ws, page, sim, args)
                results[command][front] = {
                    **h.summarize_ms(gaps),
                    "missed": missed,
                    "not_all_on": partial,
                }
    except BaseException:
        if daemon is not None:
            sys.stderr.write(ws.tail("daemon") + "\n")
        raise
    finally:
        if page is not None:
            await page.close()
        await h.stop_process(daemon)
        await sim.close()
        ws.close()
    for by_front in results.values():
        base = by_front.get("socket")
        for stats in by_front.values():
            stats["ratio_p50"] = h.ratio(stats["p50_ms"], base["p50_ms"] if base else None)
            stats["ratio_p99"] = h.ratio(stats["p99_ms"], base["p99_ms"] if base else None)
    h.say(f"{args.devices} device(s), {args.trials} trial(s) per front end and command")
    for command, by_front in results.items():
        h.say(f"  {command}:")
        for front, stats in by_front.items():
            ratio = stats.get("ratio_p99")
            vs = f", p99 ×{ratio:.2f} of the socket's" if ratio is not None else ""
            h.say(f"    {front:<6}: {h.fmt(stats)}, missed {stats['missed']}{vs}")
    kinds = load["by_kind"]
    h.say(
        f"  first load: {load['bytes']} bytes in {load['files']} files "
        f"(html {kinds['html']}, css {kinds['css']}, js {kinds['js']})"
    )
    return {"devices": args.devices, "results": results, "first_load": load}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="Stop from the web page (HTTP and WebSocket) until every simulated "
        "device's output is zero, against the same stop over the control socket."
    )
    p.add_argument("--devices", type=int, default=3, help="3: belt, pillow, butterfly (3)")
    p.add_argument("--trials", type=int, default=20, help="stops per front end and command")
    p.add_argument(
        "--front-ends",
        type=h.comma_list,
        default=list(FRONT_ENDS),
        help="socket,http,ws (default all; socket is the baseline)",
    )
    p.add_argument(
        "--commands",
        type=h.comma_list,
        default=["emergency_stop"],
        help="emergency_stop,stop (default emergency_stop)",
    )
    p.add_argument("--program", default="collar-zone", help="the session each trial stops")
    p.add_argument("--speed", type=float, default=10.0, help="the daemon's --speed (10)")
    args = p.parse_args(argv)
    for name, given, known in (
        ("front end", args.front_ends, FRONT_ENDS),
        ("command", args.commands, COMMANDS),
    ):
        unknown = set(given) - set(known)
        if unknown:
            p.error(f"unknown {name}(s): {', '.join(sorted(unknown))}")
    if args.trials < 1 or args.devices < 1:
        p.error("--trials and --devices must be at least 1")
    return args


async def run(args: argparse.Namespace) -> h.Json:
    """The measurement and its context."""
    began = time.monotonic()
    case = await measure(args)
    return {
        "benchmark": "web_stop",
        "machine": h.machine(),
        "trials": args.trials,
        "program": args.program,
        "elapsed_s": round(time.monotonic() - began, 1),
        **case,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    return h.run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
