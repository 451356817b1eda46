"""Pairing from the page: scan, feel the pulse ("did you feel it?"), pair, rename."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.web.conftest import BROWSER_GROUP, shoot, start_stack, wait_until

pytestmark = BROWSER_GROUP

if TYPE_CHECKING:  # Playwright is imported by the test that runs, not at collection
    from playwright.sync_api import Page


def test_pair_a_device_through_the_pulse_dialog(open_page: Callable[..., Page]) -> None:
    from playwright.sync_api import expect

    with start_stack("msd-web-p-", auto_pair=False) as stack:
        page = open_page(f"{stack.url}#/devices")
        expect(page.locator("#paired")).to_contain_text("No device is paired yet")
        page.get_by_role("button", name="Scan").click()
        pillow = page.locator("#found li").filter(has_text="Shiatsu pillow")
        expect(pillow).to_have_count(1)
        pillow.get_by_role("button", name="Pair").click()

        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name (optional)").fill("sofa-pillow")
        pulse_from = stack.session_t()
        dialog.get_by_role("button", name="Send the pulse").click()
        expect(dialog.locator("#felt-question")).to_have_text("Did you feel it?")
        shoot(page, "pair-phone")
        # The pulse was real: the pillow moved, and is still again.
        pulse = [r for r in stack.rows() if r["t"] >= pulse_from and r["kind"] == "pillow"]
        assert any(isinstance(r["value"], int) and r["value"] > 0 for r in pulse), pulse
        assert not stack.api("devices")["data"], "nothing is paired before the person says yes"

        dialog.get_by_role("button", name="Yes, pair it").click()
        expect(dialog).to_be_hidden(timeout=30_000)
        card = page.locator("article[data-device='sofa-pillow']")
        expect(card).to_be_visible()
        expect(card).to_contain_text("SP1")
        names = wait_until(
            lambda: [d["name"] for d in stack.api("devices")["data"]], what="the pillow paired"
        )
        assert names == ["sofa-pillow"]
        expect(card).to_contain_text("connected")
