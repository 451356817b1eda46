"""Browser tests: the page as a person uses it, served by a real daemon beside the simulator.

The browser is the system's Chromium (``apt-get install chromium``; ``./dev test``
installs it), or its headless shell where that is installed, driven by Playwright for
Python with that executable: Playwright's own browser download is not used. A missing
Chromium fails these tests, it never skips them. The browser tests run in a row in one
worker and share one browser, each test in contexts of its own (_SharedBrowser says why
and how).
Each stack (simulator, daemon and its web port) lives in a private temporary folder
on a free port, so the tests run in parallel. Tests that need no daemon of their own
share one (``shared_stack``), and undo what they change in it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemon_processes import ROOT, Setup, private_env, stop_processes

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

# Playwright (a few tenths of a CPU second to import) is imported by the fixtures, when a browser
# test runs: every pytest-xdist worker collects this folder, few run a browser.

CHROMIUM_PATHS = (
    # The headless shell first (Debian: apt-get install chromium-headless-shell): Chromium
    # without a browser window around the page (tabs, toolbar, omnibox), as Playwright runs
    # Chromium headless by default; it spends about a third less CPU on the same tests.
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/snap/bin/chromium",
)
LAUNCHER = Path(__file__).with_name("chromium.sh")
"""Starts the browser with FEATURES_OFF added to Playwright's --disable-features."""
FEATURES_OFF = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")
"""The omnibox's popup: a full Chromium keeps it loaded, hidden, in each window (one per
test's context), a WebUI page that costs about 0.15 CPU-s every second the window is open."""
DOCS_PICTURES = ROOT / "docs" / "web"
SCREENSHOTS_ENV = "MASSAGED_SCREENSHOTS"
"""Set to 1 to write the pictures into docs/web/ (a normal run keeps the tree clean)."""
SCREENSHOTS = (
    DOCS_PICTURES
    if os.environ.get(SCREENSHOTS_ENV) == "1"
    else Path(tempfile.gettempdir()) / f"massaged-screenshots-{os.getuid()}"
)
"""Where the pictures go: docs/web/ when asked, else a scratch folder (still taken and checked)."""
WAIT_MS = 20_000
"""The longest wait for the page (a loaded machine can be slow; a pass is usually quick)."""
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


def chromium_executable() -> str:
    """The system Chromium ($MASSAGED_CHROMIUM first); fails the test when there is none."""
    wanted = os.environ.get("MASSAGED_CHROMIUM")
    candidates = [wanted] if wanted else [*CHROMIUM_PATHS, shutil.which("chromium") or ""]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "Chromium not found (looked for "
        + ", ".join(c for c in candidates if c)
        + "): the browser tests need it. Install it (Debian/Ubuntu: apt-get install chromium; "
        "./dev test does this) or set MASSAGED_CHROMIUM to its executable.",
        pytrace=False,
    )


class _SharedBrowser:
    """One headless Chromium for the browser tests that run one after the other here.

    The browser tests are one xdist group (``BROWSER_GROUP``), so one worker runs them
    in a row: they share a browser, each in contexts of its own (``open_page``), as
    Playwright advises (a launch, with its Node.js driver, costs about a CPU-second).
    It is closed as soon as the next test is not a browser test
    (``pytest_runtest_teardown``): while Playwright's sync API runs, it marks an event
    loop as running on this thread, and an asyncio test that ran next would be
    refused its own loop.
    """

    def __init__(self) -> None:
        self._manager: Any = None
        self.browser: Browser | None = None

    def get(self, cache: pytest.Cache | None) -> Browser:
        if self.browser is not None and self.browser.is_connected():
            return self.browser
        self.close()  # a browser that crashed: a fresh one
        from playwright.sync_api import expect, sync_playwright

        expect.set_options(timeout=WAIT_MS)
        saved = os.environ.get("NODE_COMPILE_CACHE")
        if cache is not None:
            # Playwright's driver is a Node.js process: Node keeps the code it compiled
            # from the driver's scripts (several MB) here for the next run.
            os.environ["NODE_COMPILE_CACHE"] = str(cache.mkdir("node-compile-cache"))
        try:
            self._manager = sync_playwright()
            playwright = self._manager.start()
            # Chromium refuses to run as root with its sandbox (containers, CI).
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            env = {
                **os.environ,
                "MASSAGED_CHROMIUM_BINARY": chromium_executable(),
                "MASSAGED_CHROMIUM_FEATURES_OFF": ",".join(FEATURES_OFF),
            }
            self.browser = playwright.chromium.launch(
                executable_path=LAUNCHER, args=args, env=env, timeout=30_000
            )
        except BaseException:
            self.close()
            raise
        finally:
            if saved is None:
                os.environ.pop("NODE_COMPILE_CACHE", None)
            else:
                os.environ["NODE_COMPILE_CACHE"] = saved
        return self.browser

    def close(self) -> None:
        browser, self.browser = self.browser, None
        manager, self._manager = self._manager, None
        try:
            if browser is not None:
                with contextlib.suppress(Exception):  # already gone: nothing to close
                    browser.close()
        finally:
            if manager is not None:
                manager.__exit__(None, None, None)


_SHARED = _SharedBrowser()
BROWSER_GROUP = pytest.mark.xdist_group("browser")
"""The mark of every browser test module: one worker runs them in a row (one browser)."""


@pytest.fixture
def browser(pytestconfig: pytest.Config) -> Browser:
    """A headless Chromium (shared with the browser tests run just before; see _SharedBrowser)."""
    return _SHARED.get(getattr(pytestconfig, "cache", None))  # no cache: -p no:cacheprovider


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Close the shared browser and stack after the last browser test of a row."""
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        try:
            _SHARED.close()
        finally:
            _SHARED_STACK.close()


class ThreadedSetup(Setup):
    """Setup whose control-socket calls run in a thread of their own.

    Playwright's sync API keeps an event loop marked as running on this thread, where
    asyncio.run (Setup.api) would refuse to start another.
    """

    def api(self, command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(Setup.api, self, command, payload).result(timeout=60)


@dataclass
class WebStack:
    """A simulator, a daemon with its web page, and where to find them."""

    setup: Setup
    url: str
    speed: float

    def rows(self) -> list[dict[str, Any]]:
        """The simulator's recording so far."""
        return self.setup.rows()

    def session_t(self) -> float:
        """Now, on the recording's clock (session seconds: the simulator's speed applies)."""
        return (time.monotonic() - self.setup.t0) * self.speed

    def api(self, command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A command over the control socket (as the command line sends it)."""
        return self.setup.api(command, payload)


def start_stack(
    prefix: str,
    *,
    speed: float = 1.0,
    auto_pair: bool = True,
    lan: bool = False,
    programs_dir: bool = False,
) -> contextlib.AbstractContextManager[WebStack]:
    """`massaged simulate` and `massaged daemon --simulator` with the page on a free port."""
    return _stack(prefix, speed, auto_pair, lan, programs_dir)


@contextlib.contextmanager
def _stack(
    prefix: str, speed: float, auto_pair: bool, lan: bool, programs_dir: bool
) -> Iterator[WebStack]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    env = {
        **private_env(folder),
        "MASSAGED_WEB_PORT": "0",  # any free port: the daemon says which in `status`
        "MASSAGED_WEB_HOST": "127.0.0.1",
        "MASSAGED_WEB_LAN": "true" if lan else "false",
        # The simulated radio answers at once: a short scan keeps start-up (auto-pair) quick.
        "MASSAGED_DAEMON_SCAN_TIMEOUT": "1",
    }
    if programs_dir:
        (folder / "programs").mkdir()
        env["MASSAGED_PROGRAMS_DIR"] = str(folder / "programs")
    setup = ThreadedSetup(folder, env)
    try:
        sim = setup.start("simulate", "--record", str(setup.record), "--speed", f"{speed:g}")
        assert sim.stdout is not None
        assert sim.stderr is not None
        for _ in range(3):  # one line per simulated device
            json.loads(sim.stdout.readline())
        match = re.search(r"monotonic ([0-9.]+)", sim.stderr.readline())
        assert match, "the simulator did not say where its recording starts"
        setup.t0 = float(match.group(1))
        args = ["daemon", "--simulator", "--speed", f"{speed:g}"]
        if auto_pair:
            args.append("--auto-pair")
        with setup.log.open("w") as log:  # the daemon keeps its own copy of the descriptor
            setup.start(*args, stderr=log)
        if auto_pair:
            setup.wait_devices_up(3)
        url = wait_web_url(setup)
        yield WebStack(setup, url, speed)
    finally:
        stop_processes(setup.procs)
        shutil.rmtree(folder, ignore_errors=True)


SHARED_SPEED = 20.0
"""The shared stack's speed (session seconds per wall second)."""


class _SharedStack:
    """One stack for the browser tests that need no daemon of their own.

    A stack's start costs its two processes about half a CPU-second; a test that leaves
    the daemon as it found it (no session running, its profile changes undone) can run on
    one started for another. It is started by the first test that asks and stopped with
    the shared browser, after the last browser test of a row.
    """

    def __init__(self) -> None:
        self._exit = contextlib.ExitStack()
        self.stack: WebStack | None = None

    def get(self) -> WebStack:
        if self.stack is None:
            started = start_stack("msd-web-shared-", speed=SHARED_SPEED, programs_dir=True)
            self.stack = self._exit.enter_context(started)
        return self.stack

    def close(self) -> None:
        self.stack = None
        self._exit.close()


_SHARED_STACK = _SharedStack()


@pytest.fixture
def shared_stack() -> WebStack:
    """The stack shared by browser tests (_SharedStack): speed SHARED_SPEED, a programs folder.

    What a test changes in it, it undoes; what it asserts of the recording, it reads from
    the rows recorded since it began (another test may have run a session before).
    """
    return _SHARED_STACK.get()


def wait_web_url(setup: Setup, timeout: float = 20.0) -> str:
    """The page's address, from the daemon's status (port 0: chosen by the system)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = setup.api("status")
        except Exception:  # not listening yet
            time.sleep(0.1)
            continue
        url = last["data"]["daemon"].get("web") if isinstance(last, dict) else None
        if url:
            return str(url)
        time.sleep(0.1)
    log = setup.log.read_text() if setup.log.exists() else ""
    raise AssertionError(f"no web page in {timeout} s: {last}\n{log[-2000:]}")


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open the page at a path in a fresh context; JavaScript errors fail the test."""
    contexts = []
    errors: list[str] = []

    def opener(
        url: str,
        *,
        viewport: ViewportSize | None = None,
        dark: bool = False,
        locale: str = "en-GB",
    ) -> Page:
        context = browser.new_context(
            viewport=viewport or PHONE,
            color_scheme="dark" if dark else "light",
            locale=locale,
            reduced_motion="reduce",
        )
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(f"page error: {err}"))
        page.on(
            "console",
            lambda msg: (
                errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and not _network_noise(msg.text)
                else None
            ),
        )
        page.goto(url)
        page.wait_for_selector("main[aria-busy='false']")
        return page

    yield opener
    for context in contexts:
        context.close()
    assert not errors, "\n".join(errors)


def _network_noise(text: str) -> bool:
    """Chromium's own console lines for refused requests (a 401 or 409 the page expects,
    the socket of a daemon that has stopped): not errors of the page's code."""
    return text.startswith("Failed to load resource") or "WebSocket connection to" in text


def shoot(page: Page, name: str) -> None:
    """A screenshot for docs/web.md (the visible viewport, as a phone or a desktop shows it)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # No blinking caret or half-run transitions in the pictures.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled", caret="hide")


SMALL_TARGETS_JS = """() => {
  const wanted = 'button, a[href], select, textarea, summary, label.check, '
    + 'input:not([type=checkbox]):not([type=radio]):not([type=file])';
  return [...document.querySelectorAll(wanted)]
    .filter((el) => !el.classList.contains('skip'))
    .map((el) => [el, el.getBoundingClientRect()])
    .filter(([, r]) => r.width > 0 && r.height > 0 && (r.width < 43.5 || r.height < 43.5))
    .map(([el, r]) => {
      const name = (el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30);
      return `${el.tagName.toLowerCase()} "${name}" ${Math.round(r.width)}x${Math.round(r.height)}`;
    });
}"""


def small_targets(page: Page) -> list[str]:
    """Visible controls smaller than a 44 px touch target (WCAG 2.5.5), described."""
    found: list[str] = page.evaluate(SMALL_TARGETS_JS)
    return found


def last_values(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Each (device, channel)'s last recorded value."""
    last: dict[tuple[str, str], Any] = {}
    for row in rows:
        last[(row["device"], row["channel"])] = row["value"]
    return last


def felt_outputs(last: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """The outputs still on: an EB1 keeps its strength setting, the body feels output_a/b."""
    return {
        key: value
        for key, value in last.items()
        if isinstance(value, int) and value and not key[1].startswith("strength")
    }


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll check() until it returns something true; its last answer in the failure."""
    deadline = time.monotonic() + timeout
    result = check()
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
        result = check()
    assert result, f"not within {timeout} s: {what}"
    return result
