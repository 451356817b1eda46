"""A session from the page: start collar-zone, watch it advance, Gentler, then Stop.

Judged by what the simulated devices physically did (the recording), not by what
the page says: the page is one more front end, and the devices are the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import (
    DESKTOP,
    WebStack,
    felt_outputs,
    last_values,
    shoot,
    start_stack,
    wait_until,
)

SPEED = 20.0
"""Session seconds per wall second: collar-zone's 5 min 15 s take 16 s."""


@pytest.fixture(scope="module")
def stack() -> Iterator[WebStack]:
    with start_stack("msd-web-s-", speed=SPEED) as s:
        yield s


def belt_peak(rows: list[dict[str, object]], start: float, end: float) -> int:
    """The strongest belt motor level recorded in [start, end) session seconds."""
    return max(
        (
            int(row["value"])  # type: ignore[call-overload]
            for row in rows
            if row["kind"] == "belt"
            and str(row["channel"]).startswith("motor")
            and start <= float(row["t"]) < end  # type: ignore[arg-type]
        ),
        default=0,
    )


def test_start_watch_gentler_and_stop(stack: WebStack, open_page: Callable[..., Page]) -> None:
    page = open_page(f"{stack.url}#/programs/collar-zone")
    page.get_by_role("button", name="Start").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    # The method asks whether the person is well today; the page will not start without it.
    dialog.get_by_role("button", name="Start").click()
    expect(dialog.locator("#start-error")).to_contain_text("well today")
    dialog.get_by_label("I am well today").check()
    dialog.get_by_role("button", name="Start").click()
    expect(page).to_have_url(f"{stack.url}#/now")

    # The step and its count advance as the daemon plays the program.
    steps: set[str] = set()
    counts: set[str] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not ("Step 2 of 8" in steps and len(counts) >= 3):
        steps.add(page.locator("#step-no").inner_text())
        counts.add(page.locator("#count").inner_text())
        time.sleep(0.03)
    assert {"Step 1 of 8", "Step 2 of 8"} <= steps, steps
    assert any(c.startswith("stroke ") and c.endswith(" of 7") for c in counts), counts
    assert len(counts) >= 3, counts
    step2_seen = stack.session_t()
    expect(page.locator("#outputs .bar").first).to_be_visible()

    # Gentler twice in the rubs (intensity 0.5): everything after is at most 0.49 of it.
    time.sleep(8 / SPEED)
    pressed = stack.session_t()
    page.get_by_role("button", name="Gentler").click()
    page.get_by_role("button", name="Gentler").click()
    expect(page.locator("#step")).to_contain_text("Gentler pressed 2×")
    after = stack.session_t() + 1.0
    time.sleep(20 / SPEED)
    rows = stack.rows()
    before_peak = belt_peak(rows, step2_seen, pressed)
    after_peak = belt_peak(rows, after, after + 20)
    assert before_peak > 0, "the belt was not driven before Gentler"
    assert 0 < after_peak <= 0.8 * before_peak, (before_peak, after_peak)

    # Stop: every device fades to zero, and the page says no session is running.
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#idle")).to_be_visible(timeout=15_000)
    wait_until(
        lambda: not felt_outputs(last_values(stack.rows())),
        what=f"every device at zero: {felt_outputs(last_values(stack.rows()))}",
    )
    expect(page.locator("#last")).to_contain_text("stopped")
