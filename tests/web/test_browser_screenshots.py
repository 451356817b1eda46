"""Pictures of every page at phone and desktop widths, for docs/web.md.

Taken against a real daemon and the simulator during a session, so they show the
page as it is; each picture also checks that the page rendered what it shows.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.web.conftest import DESKTOP, PHONE, start_stack, shoot, wait_until


def test_screenshots_of_every_page(open_page: Callable[..., Page]) -> None:
    with start_stack("msd-web-shot-", speed=2) as stack:
        assert stack.api("run", {"program": "collar-zone", "transaction": "shots"})["status"] == "ok"
        phone = open_page(f"{stack.url}#/now", viewport=PHONE)
        desktop = open_page(f"{stack.url}#/now", viewport=DESKTOP)
        dark = open_page(f"{stack.url}#/now", viewport=PHONE, dark=True)
        russian = open_page(f"{stack.url}#/now", viewport=PHONE, locale="ru-RU")
        for page in (phone, desktop, dark, russian):
            expect(page.locator("#count")).to_contain_text("7")
            expect(page.locator("#outputs .bar").first).to_be_visible()
        shoot(phone, "now-phone")
        shoot(desktop, "now-desktop")
        shoot(dark, "now-phone-dark")
        expect(russian.locator("#step-no")).to_contain_text("Шаг")
        shoot(russian, "now-phone-ru")
        # Below the fold on a phone: the live bars of every output.
        phone.locator("#outputs").scroll_into_view_if_needed()
        shoot(phone, "now-phone-outputs")

        for page, size in ((phone, "phone"), (desktop, "desktop")):
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
        for page, size in ((phone, "phone"), (desktop, "desktop")):
            page.get_by_role("link", name="Me").click()
            expect(page.locator("#history")).to_contain_text("collar-zone")
            expect(page.locator("#course-done")).to_contain_text("of 15")
            shoot(page, f"me-{size}")
