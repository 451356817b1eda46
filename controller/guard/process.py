"""The host guard process: ends the BLE links of a daemon that froze or died.

On Linux a BLE link outlives the process that opened it (BlueZ keeps it up),
and a stopped process keeps its links too, so a device without a watchdog of
its own (the SP1 pillow) runs on after its host froze or was killed. This small
process watches its parent from outside: the parent writes a line on an
inherited socket from its event loop several times a second (``beat``) and
names the links it holds (``hold ADDRESS ROUTE`` / ``free ADDRESS``). When the
beats stop for longer than the bound (the loop is blocked, the process is
stopped) or the socket reaches end of file (the process died), the guard ends
every link it was told of the way any process on the machine may:
``org.bluez.Device1.Disconnect`` over the system D-Bus (``bluez:<object path>``)
or the simulated radio's ``device_disconnect`` (``sim:<socket path>``). The
devices' own firmware then stops them (the pillow at once on a dropped link).

It is run as a script (``python -S``), not imported through the package, and
imports nothing but the standard library until a BlueZ link needs dbus-fast:
it starts fast, stays small, and a broken import elsewhere in the project
cannot stop it. One starts with every daemon and every local session, so even
the standard library is imported only where it is used (no argparse: its two
options are read by hand), and site-packages only for BlueZ. It runs in its own
session, so Ctrl-Z in a terminal or ``kill -STOP`` of the daemon does not stop
it too; and it ignores SIGTERM/SIGINT/SIGHUP (systemd signals the whole unit on
stop) and keeps watching until its parent is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

STALL_AFTER_S = 1.5
"""Default: seconds without a beat after which the daemon is taken as frozen."""
END_TIMEOUT_S = 1.0
"""Seconds for one attempt to end the links of one route."""
RETRY_EVERY_S = 0.5
"""Seconds between two attempts on links that could not be ended yet."""
GIVE_UP_AFTER_S = 30.0
"""After the daemon died: seconds to keep trying before the guard exits anyway."""
MAX_LINE = 4096
"""Longest accepted line from the daemon."""
BLUEZ_ALREADY_DOWN = ("org.bluez.Error.NotConnected", "org.freedesktop.DBus.Error.UnknownObject")
"""D-Bus errors that mean there is no link left to end."""


def log(text: str) -> None:
    """One line to stderr, which is the daemon's (the journal under systemd)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"massaged host guard [{os.getpid()}]: {text}", file=sys.stderr, flush=True)


# -- ending links ---------------------------------------------------------------


def end_sim_links(radio: str, addresses: list[str], timeout: float = END_TIMEOUT_S) -> list[str]:
    """Ask the simulated radio to end each link; the addresses ended (or already down)."""
    import json
    import socket

    done: list[str] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(radio)
            stream = sock.makefile("rwb")
            for number, address in enumerate(addresses, 1):
                request = {"id": number, "op": "device_disconnect", "address": address}
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                while True:
                    line = stream.readline(MAX_LINE)
                    if not line:
                        raise OSError("the radio closed the connection")
                    reply = json.loads(line)
                    if reply.get("id") == number:
                        break
                if reply.get("ok") or reply.get("code") == "not_found":
                    done.append(address)
                else:
                    log(f"{address}: the radio refused: {reply.get('message')}")
    except (OSError, ValueError) as err:
        log(f"cannot reach the simulated radio at {radio}: {err!r}")
    return done


async def _bluez_disconnect(paths: list[str], timeout: float) -> list[str]:
    import asyncio

    _site_packages()
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    done: list[str] = []
    async with asyncio.timeout(timeout):
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        for path in paths:
            message = Message(
                destination="org.bluez",
                path=path,
                interface="org.bluez.Device1",
                member="Disconnect",
            )
            try:
                async with asyncio.timeout(timeout):
                    reply = await bus.call(message)
            except TimeoutError:
                log(f"{path}: BlueZ did not answer Disconnect within {timeout:g} s")
                continue
            if reply is None or reply.message_type != MessageType.ERROR:
                done.append(path)
            elif reply.error_name in BLUEZ_ALREADY_DOWN:
                done.append(path)  # already down, or BlueZ forgot the device: nothing to end
            else:
                log(f"{path}: BlueZ refused Disconnect: {reply.error_name} {reply.body}")
    finally:
        bus.disconnect()
    return done


def _site_packages() -> None:
    """Put the installed packages on the path: the daemon starts the guard with ``-S``
    (no site-packages, a faster start), and only BlueZ's dbus-fast needs them."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def end_bluez_links(paths: list[str], timeout: float = END_TIMEOUT_S) -> list[str]:
    """org.bluez.Device1.Disconnect on each device object path; the paths ended."""
    # Imported only here: the guard stays small where no real BlueZ link is held.
    import asyncio

    try:
        return asyncio.run(_bluez_disconnect(paths, timeout))
    except Exception as err:  # no system bus, no dbus-fast, BlueZ gone: say so, retry later
        log(f"cannot reach BlueZ over D-Bus: {err!r}")
        return []


def end_links(links: dict[str, str]) -> set[str]:
    """End every link (address -> route); the addresses that are down now."""
    by_route: dict[str, list[str]] = {}
    for address, route in links.items():
        by_route.setdefault(route, []).append(address)
    ended: set[str] = set()
    for route, addresses in by_route.items():
        scheme, _, where = route.partition(":")
        if scheme == "sim":
            ended.update(end_sim_links(where, addresses))
        elif scheme == "bluez":
            # One device object per address: the route is its path.
            if end_bluez_links([where]):
                ended.update(addresses)
        else:
            log(f"no way to end {', '.join(addresses)}: unknown route {route!r}")
            ended.update(addresses)  # retrying cannot help
    return ended


# -- watching the daemon -----------------------------------------------------------


class Guard:
    """The guard's state: the links it was told of, and when the daemon last beat."""

    def __init__(self, stall_after: float) -> None:
        self.stall_after = stall_after
        self.links: dict[str, str] = {}
        """Address -> route of every link the daemon holds (and the guard has not ended)."""
        self.last_beat = time.monotonic()
        self.tripped = False
        """The daemon is taken as frozen: its links were (or are being) ended."""
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """Take bytes from the daemon: beats and link changes, one per line."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        for raw in lines:
            self._line(raw.decode(errors="replace"))

    def _line(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "beat":
            if self.tripped:
                log("the daemon runs again")
            self.last_beat = time.monotonic()
            self.tripped = False
        elif word == "hold":
            address, _, route = rest.partition(" ")
            if address and route:
                self.links[address] = route
        elif word == "free":
            self.links.pop(rest, None)
        elif word:
            log(f"ignoring {line[:80]!r}")

    def stalled(self, now: float) -> bool:
        """True when the daemon has not beaten for longer than the bound."""
        return now - self.last_beat > self.stall_after

    def end_all(self, why: str) -> None:
        """End every held link; keep those that could not be ended for a retry."""
        if not self.links:
            return
        log(f"{why}: ending {len(self.links)} BLE link(s): {', '.join(sorted(self.links))}")
        for address in end_links(self.links):
            self.links.pop(address, None)
        if self.links:
            log(f"still up, will retry: {', '.join(sorted(self.links))}")


def watch(fd: int, stall_after: float) -> int:
    """Watch the daemon on fd until it dies; end its links when it freezes or dies."""
    guard = Guard(stall_after)
    last_try = 0.0
    while True:
        now = time.monotonic()
        if guard.stalled(now):
            if not guard.tripped:
                guard.tripped = True
                guard.end_all(f"no heartbeat for {now - guard.last_beat:.1f} s (daemon frozen)")
                last_try = time.monotonic()
            elif guard.links and now - last_try >= RETRY_EVERY_S:
                guard.end_all("retrying")
                last_try = time.monotonic()
            wait = RETRY_EVERY_S
        else:
            wait = max(0.01, guard.last_beat + stall_after - now + 0.01)
        readable, _, _ = select.select([fd], [], [], wait)
        if not readable:
            continue
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        except ConnectionResetError:
            # The daemon died with bytes unread on its side: the same end as end of file.
            data = b""
        except OSError as err:
            log(f"reading from the daemon failed: {err!r}")
            data = b""
        if data:
            guard.feed(data)
            continue
        # End of file: the daemon is gone (killed, crashed, or closed us at its exit).
        return _after_death(guard)


def _after_death(guard: Guard) -> int:
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    guard.end_all("the daemon is gone")
    while guard.links and time.monotonic() < deadline:
        time.sleep(RETRY_EVERY_S)
        guard.end_all("retrying")
    if guard.links:
        log(f"gave up on {', '.join(sorted(guard.links))}")
        return 1
    return 0


USAGE = "usage: process.py --fd FD [--stall-after SECONDS]"


def parse_args(argv: list[str]) -> tuple[int, float]:
    """(fd, stall_after) from ``--fd FD [--stall-after SECONDS]``; ValueError otherwise."""
    options = {"--fd": "", "--stall-after": str(STALL_AFTER_S)}
    words = iter(argv)
    for word in words:
        name, equals, value = word.partition("=")
        if name not in options:
            raise ValueError(f"unknown option {word!r}")
        options[name] = value if equals else next(words, "")
    return int(options["--fd"]), float(options["--stall-after"])


def main(argv: list[str] | None = None) -> int:
    """Run the guard on the inherited socket named by --fd."""
    try:
        fd, stall_after = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(f"{USAGE}\n{err}", file=sys.stderr)
        return 2
    # systemd signals the whole unit on stop: keep watching until the daemon has faded
    # its session out and exited (end of file), which is what ends the guard.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTSTP, signal.SIGABRT):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    return watch(fd, stall_after)


if __name__ == "__main__":
    sys.exit(main())
