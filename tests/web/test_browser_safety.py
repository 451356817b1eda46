"""What the page refuses, and says why: a contraindication, a broken program file."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.web.conftest import BROWSER_GROUP, WebStack, shoot

pytestmark = BROWSER_GROUP

if TYPE_CHECKING:  # Playwright is imported by the test that runs, not at collection
    from playwright.sync_api import FilePayload, Page

GOOD = """id = "my-neck"
title = "My neck"
audience = "adult"
max_duration = 10
description = "Strokes only, as the method begins."
cites = "Perform 7 strokes between the head and shoulders."

[[steps]]
technique = "stroking"
zone = "collar_zone"
repetitions = 7
intensity = 0.35
"""
BROKEN = GOOD.replace("[[steps]]\n", "[[steps]\n")
"""A TOML error on line 8, column 8 (the table header lacks its second ']')."""


def test_the_page_refuses_and_says_why(
    shared_stack: WebStack, open_page: Callable[..., Page]
) -> None:
    from playwright.sync_api import expect

    # The shared stack (its programs folder is what the editor saves into): the saved
    # program is removed at the end, the profile's contraindication in its own part.
    stack = shared_stack
    saved = stack.setup.folder / "programs" / "my-neck.toml"
    try:
        page = open_page(f"{stack.url}#/me")
        a_contraindication_blocks_the_start_with_its_reason(stack, page)
        # On to the editor in the same page, as a person would (a fresh page in a context of
        # its own costs the browser and the daemon about 0.4 CPU-s): Esc closes the dialog.
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
        page.goto(f"{stack.url}#/programs")
        a_broken_program_upload_shows_the_error_at_its_line(stack, page)
    finally:
        saved.unlink(missing_ok=True)


def a_contraindication_blocks_the_start_with_its_reason(stack: WebStack, page: Page) -> None:
    from playwright.sync_api import expect

    # The recording from here on: a test before this one on the same stack may have run a session.
    since = stack.session_t()
    fever = page.get_by_role("checkbox", name="Fever")
    # What it means is there to read beside it.
    expect(page.locator("#why-fever")).to_contain_text("contraindicated while you have a fever")
    fever.check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#profile-error")).to_be_empty()
    try:
        page.goto(f"{stack.url}#/programs/collar-zone")
        page.get_by_role("button", name="Start").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("I am well today").check()
        dialog.get_by_role("button", name="Start").click()
        error = dialog.locator("#start-error")
        expect(error).to_contain_text("fever")
        expect(error).to_contain_text("contraindicated")
        expect(page).to_have_url(f"{stack.url}#/programs/collar-zone")
        assert stack.api("status")["data"]["session"] is None
        moved = [
            r
            for r in stack.rows()
            if r["t"] >= since and isinstance(r["value"], int) and r["value"]
        ]
        assert not moved, moved
    finally:
        cleared = stack.api("profile_set", {"name": "default", "contraindications": []})
        assert cleared["status"] == "ok", cleared


def a_broken_program_upload_shows_the_error_at_its_line(stack: WebStack, page: Page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Upload or write").click()
    upload: FilePayload = {
        "name": "my-neck.toml",
        "mimeType": "text/plain",
        "buffer": BROKEN.encode(),
    }
    page.locator("#upload").set_input_files(files=[upload])
    error = page.locator("#editor-error")
    expect(error).to_contain_text("Line 8, column 8")
    expect(page.locator(".excerpt")).to_contain_text("8 | [[steps]")
    page.locator(".excerpt").scroll_into_view_if_needed()
    shoot(page, "editor-phone")
    # The caret waits at the error, ready for the fix.
    caret = page.locator("textarea").evaluate("t => t.selectionStart")
    assert BROKEN[:caret].count("\n") == 7, caret
    assert not (stack.setup.folder / "programs" / "my-neck.toml").exists()
    # Fixed, it is saved among the user's programs and listed with them.
    page.locator("textarea").fill(GOOD)
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("No errors.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#check-result")).to_contain_text("Saved.")
    assert (stack.setup.folder / "programs" / "my-neck.toml").read_text() == GOOD
    page.goto(f"{stack.url}#/programs")
    expect(page.locator("[data-program='my-neck']")).to_contain_text("yours")
