"""A repeated warning is logged a few times, then counted (controller.log_limit).

Issue 11: a flood of connections wrote 181,000 "Too many open files" lines in
40 s, and the MQTT bridge forwarded 45,000 of them. The daemon's own handler
(controller.cli.setup_logging) and the bridge's log handler now each carry a
RepeatLimit.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.log_limit import BURST, MAX_SITES, RepeatLimit, limit_repeats
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.settings import MqttSettings

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    """Keeps what it is given, formatted."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def limited() -> tuple[logging.Logger, ListHandler, Clock]:
    logger = logging.getLogger("tests.log_limit")
    logger.propagate = False
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG)
    handler = ListHandler()
    clock = Clock()
    handler.addFilter(RepeatLimit(handler, burst=3, interval=60.0, clock=clock))
    logger.addHandler(handler)
    return logger, handler, clock


def fail(logger: logging.Logger, n: int) -> None:
    """One call site that fails n times, with a different argument each time."""
    for i in range(n):
        logger.warning("accept failed: %s (%d)", "Too many open files", i)


def test_a_repeated_warning_is_let_through_a_few_times_then_counted(
    limited: tuple[logging.Logger, ListHandler, Clock],
) -> None:
    logger, handler, clock = limited
    fail(logger, 1000)
    assert handler.lines[:3] == [f"accept failed: Too many open files ({i})" for i in range(3)]
    assert len(handler.lines) == 4
    assert handler.lines[3].startswith("repeated 3 times: the next ones like 'accept failed")
    assert "held back for 60 s" in handler.lines[3]
    clock.now += 30.0
    fail(logger, 1000)
    assert len(handler.lines) == 4
    # A window later: how many were held back, then the record itself, and a fresh burst.
    clock.now += 30.0
    fail(logger, 2)
    assert handler.lines[4:] == [
        "1997 more like the next one held back in the last 60 s",
        "accept failed: Too many open files (0)",
        "accept failed: Too many open files (1)",
    ]


def test_other_places_and_lower_levels_are_not_held_back(
    limited: tuple[logging.Logger, ListHandler, Clock],
) -> None:
    logger, handler, _ = limited
    fail(logger, 10)
    for i in range(10):
        logger.error("another place %d", i)
        logger.info("wire %d", i)
        logger.debug("hex %d", i)
    assert sum(line.startswith("another place") for line in handler.lines) == 3
    assert sum(line.startswith("wire") for line in handler.lines) == 10
    assert sum(line.startswith("hex") for line in handler.lines) == 10


def test_each_handler_counts_for_itself_and_the_record_is_unchanged() -> None:
    logger = logging.getLogger("tests.log_limit.two")
    logger.propagate = False
    logger.handlers.clear()
    first, second = ListHandler(), ListHandler()
    limit_repeats(first, burst=2)
    logger.addHandler(first)
    logger.addHandler(second)  # no limit: sees every record, untouched
    fail(logger, 5)
    assert len(first.lines) == 3
    assert second.lines == [f"accept failed: Too many open files ({i})" for i in range(5)]


def test_the_counts_stay_bounded_however_many_places_log() -> None:
    handler = ListHandler()
    limit = limit_repeats(handler)
    for i in range(3 * MAX_SITES):
        record = logging.LogRecord(f"place.{i}", logging.WARNING, __file__, i, "x", (), None)
        handler.handle(record)
    assert len(handler.lines) == 3 * MAX_SITES
    assert len(limit._windows) == MAX_SITES


SETUP = """
import logging, sys
from controller.cli import setup_logging
setup_logging(0)
for i in range(5000):
    logging.getLogger("controller.control").warning("accept failed: [Errno 24] %d", i)
"""


def test_the_command_lines_log_holds_back_a_flood() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SETUP],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == BURST + 1, lines[-3:]
    assert "held back" in lines[-1]


class Outbox:
    """Stands in for the bridge's publishing: what its log handler hands over."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []


async def test_the_bridge_forwards_a_flood_of_warnings_as_a_few_messages() -> None:
    settings = MqttSettings(enabled=True, host="127.0.0.1", port=1)  # nothing listens there
    bridge = MqttBridge(settings, api=None, programs=["collar-zone"])  # type: ignore[arg-type]
    published: list[dict[str, Any]] = []
    bridge._log_entry = published.append  # type: ignore[method-assign,assignment]
    await bridge.start()
    try:
        for i in range(1000):
            logging.getLogger("controller.control").warning("accept failed: %d", i)
        await asyncio.sleep(0.05)  # the handler hands entries over through the loop
    finally:
        await bridge.close()
    flood = [e for e in published if e["logger"] == "controller.control"]
    assert len(flood) == BURST + 1, len(flood)
    assert "held back" in flood[-1]["message"]
