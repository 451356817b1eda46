"""A session from the page: start collar-zone, watch it advance, Gentler, then Stop.

Judged by what the simulated devices physically did (the recording), not by what
the page says: the page is one more front end, and the devices are the truth.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.web.conftest import (
    BROWSER_GROUP,
    SHARED_SPEED,
    WebStack,
    felt_outputs,
    last_values,
    wait_until,
)

pytestmark = BROWSER_GROUP

if TYPE_CHECKING:  # Playwright is imported by the test that runs, not at collection
    from playwright.sync_api import Page

SPEED = SHARED_SPEED
"""Session seconds per wall second (20: collar-zone's 5 min 15 s take 16 s)."""
POLL_S = 0.1
"""Between two looks at the step and its count: a stroke lasts longer than that even at
SPEED, and each look costs the page, Playwright's driver and this process a few ms of CPU."""
STEP_AND_COUNT_JS = """() => {
  const step = document.querySelector('#step-no');
  const count = document.querySelector('#count');
  return step && count ? [step.innerText, count.innerText] : null;
}"""
"""The step and its count in one look (one round trip to the page instead of two)."""


@pytest.fixture
def stack(shared_stack: WebStack) -> Iterator[WebStack]:
    """The shared stack: the session the test starts is stopped, even when the test fails."""
    assert shared_stack.speed == SPEED
    yield shared_stack
    if shared_stack.api("status")["data"]["session"] is not None:
        assert shared_stack.api("stop")["status"] == "ok"
        wait_until(lambda: shared_stack.api("status")["data"]["session"] is None, what="stopped")


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


def advanced(steps: list[int]) -> bool:
    """True when the page showed one step and then the next."""
    return any(b == a + 1 for a, b in itertools.pairwise(steps))


def test_start_watch_gentler_and_stop(stack: WebStack, open_page: Callable[..., Page]) -> None:
    from playwright.sync_api import expect

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
    steps: list[int] = []
    counts: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (advanced(steps) and len(counts) >= 3):
        shown_now = page.evaluate(STEP_AND_COUNT_JS)
        if shown_now is None:  # not drawn yet: wait for it, as a locator would
            time.sleep(POLL_S)
            continue
        shown, count = shown_now
        step = re.fullmatch(r"Step (\d) of 8", shown)
        # "Step – of 8" between two steps (a pause between movements) is fine, with no count
        # (there is nothing to count); anything else is not.
        if not step:
            assert shown == "Step – of 8", shown
            assert count == "" or re.fullmatch(r"[a-z ]+ \d+ of \d+", count), count
            time.sleep(POLL_S)
            continue
        steps.append(int(step.group(1)))
        assert re.fullmatch(r"[a-z ]+ \d+ of \d+", count), count
        counts.add(count)
        time.sleep(POLL_S)
    assert advanced(steps), steps
    assert len(counts) >= 3, counts
    if 1 in steps:  # the first step counts the method's 7 strokes
        assert any(c.startswith("stroke ") and c.endswith(" of 7") for c in counts), counts
    advanced_at = stack.session_t()
    expect(page.locator("#outputs .bar").first).to_be_visible()

    # Gentler three times: 0.7³ = 0.34 of the program's strength from then on. Every step
    # of collar-zone up to the vibration asks 0.35 to 0.7, so whichever steps the two
    # windows fall in, the belt's peak after is at most 0.7 × 0.34 / 0.35 = 0.69 of before.
    time.sleep(8 / SPEED)
    pressed = stack.session_t()
    for _ in range(3):
        page.get_by_role("button", name="Gentler").click()
    expect(page.locator("#step")).to_contain_text("Gentler pressed 3×")
    after = stack.session_t() + 1.0
    time.sleep(20 / SPEED)
    rows = stack.rows()
    before_peak = belt_peak(rows, advanced_at, pressed)
    after_peak = belt_peak(rows, after, after + 20)
    assert before_peak > 0, "the belt was not driven before Gentler"
    assert 0 < after_peak <= 0.8 * before_peak, (before_peak, after_peak)

    # Stop: every device fades to zero, and the page says no session is running.
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#idle")).to_be_visible()
    wait_until(
        lambda: not felt_outputs(last_values(stack.rows())),
        what=f"every device at zero: {felt_outputs(last_values(stack.rows()))}",
    )
    expect(page.locator("#last")).to_contain_text("stopped")
