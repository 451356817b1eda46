"""Pictures of every page at phone and desktop widths, for docs/web.md.

Taken against a real daemon and the simulator during a session, so they show the
page as it is; each picture also checks that the page rendered what it shows. One
page is resized, recoloured and switched to Russian between pictures: a page load
costs more than all of that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.web.conftest import BROWSER_GROUP, DESKTOP, PHONE, small_targets, start_stack, wait_until
from tests.web.conftest import shoot as take

pytestmark = BROWSER_GROUP

if TYPE_CHECKING:  # Playwright is imported by the test that runs, not at collection
    from playwright.sync_api import Page


def shoot(page: Page, name: str) -> None:
    """The picture; and on a phone, every control on it is a 44 px touch target."""
    take(page, name)
    if name.endswith(("-phone", "-phone-ru", "-phone-outputs")):
        assert not small_targets(page), (name, small_targets(page))


BELT_ON = """() => [...document.querySelectorAll('[data-device=belt] [role=meter]')]
  .some((bar) => Number(bar.getAttribute('aria-valuenow')) > 0)"""
"""True while a belt motor runs (strokes have rests between them: a picture waits for one)."""


EVENTS_IN_WORDS = """async () => {
  const now = await import('/static/js/page-now.js');
  const events = [
    ['gentler', { presses: 2, factor: 0.8 }], ['scale', { scale: 0.9 }], ['heater', { on: true }],
    ['ems_wheel', { a: 4, b: 10 }], ['low_battery', { percent: 9 }],
    ['overheated', { temperature: 48.5 }], ['pause', { reason: 'user' }],
    ['resume', { reason: 'pillow_empty' }], ['reconnected', { attempts: 2 }],
    ['end', { outcome: 'completed', reason: 'completed' }],
    ['end', { outcome: 'cut', reason: 'cut at the session limit' }],
    ['safety', { rule: 'session_time', detail: 'refused: past the session limit of 1800 s' }],
    ['dropped', { reason: 'EMS-only contraindication' }], ['StopButtonPressed', {}],
  ];
  return [...events.map(([event, detail]) => now.eventText({ event, detail })),
    now.reasonText('user'), now.reasonText('pillow_empty')];
}"""
"""A device event and a pause reason of each shape the daemon sends, in the page's words."""


def test_screenshots_of_every_page(open_page: Callable[..., Page]) -> None:
    from playwright.sync_api import expect

    with start_stack("msd-web-shot-", speed=2) as stack:
        assert stack.api("run", {"program": "collar-zone"})["status"] == "ok"
        page = open_page(f"{stack.url}#/now", viewport=PHONE)
        expect(page.locator("#count")).to_contain_text(" of 7")
        expect(page.locator("#outputs .bar").first).to_be_visible()
        # A device event as it happens: the pillow's sensor finds nobody on it, then someone.
        for occupied in ("false", "true"):
            fault = stack.setup.cli("sim-fault", "pillow-1", "set_occupied", occupied)
            assert fault.returncode == 0, fault.stderr
        expect(page.locator(".events")).to_contain_text("the pillow is empty: kneading waits")
        expect(page.locator(".events")).to_contain_text("someone is on the pillow again")
        shoot(page, "now-phone")
        page.emulate_media(color_scheme="dark")
        shoot(page, "now-phone-dark")
        page.emulate_media(color_scheme="light")
        # The language switch: every string of the page from the Russian catalogue.
        page.get_by_role("button", name="Русский язык").click()
        expect(page.locator("#step-no")).to_contain_text("Шаг")
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        shoot(page, "now-phone-ru")
        # Events and pause reasons in Russian too, details included (issue 15's page showed
        # "пауза (reason user)"): the daemon's codes are worded, its free text left out.
        for text in page.evaluate(EVENTS_IN_WORDS):
            assert not re.search(r"[A-Za-z]{3,}", text), text
        page.get_by_role("button", name="English").click()
        expect(page.locator("#step-no")).to_contain_text("Step")
        page.locator("#lang").blur()
        page.locator("#outputs").scroll_into_view_if_needed()
        page.wait_for_function(BELT_ON)
        shoot(page, "now-phone-outputs")
        page.set_viewport_size(DESKTOP)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_function(BELT_ON)
        shoot(page, "now-desktop")

        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            page.get_by_role("link", name="Devices").click()
            expect(page.locator("article[data-device]")).to_have_count(3)
            shoot(page, f"devices-{size}")
            page.get_by_role("link", name="Programs").click()
            expect(page.locator("[data-program='collar-zone']")).to_be_visible()
            shoot(page, f"programs-{size}")
            page.locator("[data-program='collar-zone'] a").click()
            expect(page.locator(".plot path").first).to_be_attached()
            shoot(page, f"program-{size}")

        assert stack.api("stop")["status"] == "ok"
        wait_until(lambda: stack.api("status")["data"]["session"] is None, what="stopped")
        for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(viewport)
            page.get_by_role("link", name="Me").click()
            expect(page.locator("#history")).to_contain_text("collar-zone")
            expect(page.locator("#course-done")).to_contain_text("of 15")
            shoot(page, f"me-{size}")
