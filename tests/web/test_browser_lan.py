"""On the LAN (``[web] lan = true``): nothing but Stop and Emergency stop without a login."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.web.conftest import BROWSER_GROUP, felt_outputs, last_values, start_stack, wait_until

pytestmark = BROWSER_GROUP

if TYPE_CHECKING:  # Playwright is imported by the test that runs, not at collection
    from playwright.sync_api import Page


def test_lan_refuses_a_start_without_login_but_accepts_stop(
    open_page: Callable[..., Page],
) -> None:
    from playwright.sync_api import expect

    with start_stack("msd-web-l-", lan=True, speed=10) as stack:
        page = open_page(f"{stack.url}#/programs/collar-zone")
        expect(page.locator("#login")).to_contain_text("log in with the token")
        # The page cannot even read the program; a start, as the page would send it, is refused.
        expect(page.locator("main .error")).to_contain_text("Log in first")
        answer = page.evaluate(
            """async () => {
                const api = await import('/static/js/api.js');
                return api.command('run', {program: 'collar-zone', well_today: true});
            }"""
        )
        assert answer["http"] == 401, answer
        assert stack.api("status")["data"]["session"] is None

        # A session started elsewhere (the command line) is stopped from the locked page.
        assert stack.api("run", {"program": "collar-zone"})["status"] == "ok"
        wait_until(lambda: felt_outputs(last_values(stack.rows())), what="the devices on")
        page.get_by_role("link", name="Now").click()
        page.get_by_role("button", name="Stop", exact=True).click()
        wait_until(lambda: stack.api("status")["data"]["session"] is None, what="the session ended")
        wait_until(lambda: not felt_outputs(last_values(stack.rows())), what="every device at zero")
        expect(page.locator("#alert")).to_contain_text("Stopping")

        # With the token (`massaged web token`), the same page may do everything.
        made = stack.setup.cli("web", "token")
        assert made.returncode == 0, made.stderr
        page.get_by_label("Login token").fill("not-the-token")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#login .error")).not_to_be_empty()
        page.get_by_label("Login token").fill(made.stdout.strip())
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#login")).to_be_hidden()
        page.get_by_role("link", name="Programs").click()
        expect(page.locator("[data-program='collar-zone']")).to_be_visible()
