"""The user's profile beside the chat: what they say shows up, a newer fact replaces an older
one, a fact is edited, added and removed in the page, and "Forget me" clears it."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import TIMEOUT_MS, Watched, screenshot
from tests.browser.test_chat_page import open_chat, say
from tests.e2e.conftest import Stack

# Playwright's assertions give up after 5 s by default: the page's own bound here (a loaded
# machine), as for its actions.
expect.set_options(timeout=TIMEOUT_MS)


async def profile_of(stack: Stack, user: str) -> dict[str, Any]:
    async with stack.http.get(f"{stack.url}/api/users/{user}/profile") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def open_as(w: Watched, stack: Stack, user: str) -> None:
    await w.page.add_init_script(f"localStorage.setItem('chatbus.user', '{user}')")
    await open_chat(w, stack, f"web-{uuid.uuid4().hex[:8]}")
    await expect(w.page.locator("#profile-note")).to_have_text(
        "Nothing yet. Tell the assistant your name, where you live, your plan…"
    )


async def test_what_the_user_says_appears_and_can_be_edited_in_the_page(
    web_stack: Stack, watched: Watched
) -> None:
    page, user = watched.page, f"web-user-{uuid.uuid4().hex[:8]}"
    await open_as(watched, web_stack, user)
    facts, city = page.locator("#facts"), page.locator('#facts [data-key="city"] .fact-value')

    # memory takes the fact from the stored turn; the page reads the profile after the reply
    await say(watched, "Hi! I live in Berlin.")
    await expect(city).to_have_text("Berlin")
    assert (await profile_of(web_stack, user))["profile"] == {"city": "Berlin"}

    # a move replaces the city: Berlin is only listed as no longer true
    await say(watched, "I moved to Paris last week.")
    await expect(city).to_have_text("Paris")
    await expect(facts).not_to_contain_text("Berlin")
    await expect(page.locator("#history")).to_contain_text("Berlin → Paris")

    # edit in place: the field takes the focus, Enter saves, the API has the edit
    await page.click('button[aria-label="Edit city"]')
    field = page.locator('input[aria-label="New value of city"]')
    await expect(field).to_be_focused()
    await expect(field).to_have_value("Paris")
    await field.fill("Lisbon")
    await field.press("Enter")
    await expect(city).to_have_text("Lisbon")
    body = await profile_of(web_stack, user)
    assert body["profile"] == {"city": "Lisbon"}
    assert body["facts"]["city"]["source"] == "edited"

    # add a fact, then remove it (a PATCH with null)
    await page.fill("#fact-name", "plan")
    await page.fill("#fact-value", "enterprise")
    await page.click("#fact-add button")
    await expect(page.locator('#facts [data-key="plan"] .fact-value')).to_have_text("enterprise")
    body = await profile_of(web_stack, user)
    assert body["profile"] == {"city": "Lisbon", "plan": "enterprise"}
    await page.click('button[aria-label="Remove plan"]')
    await expect(page.locator('#facts [data-key="plan"]')).to_have_count(0)
    assert (await profile_of(web_stack, user))["profile"] == {"city": "Lisbon"}
    await screenshot(page, "chat-profile")

    # the page reads the profile again when it opens
    await page.reload()
    await expect(city).to_have_text("Lisbon")
    assert watched.bad_responses == []
    assert watched.console_errors == []


async def test_forget_me_clears_the_profile_and_the_conversation(
    web_stack: Stack, watched: Watched
) -> None:
    page, user = watched.page, f"web-user-{uuid.uuid4().hex[:8]}"
    await open_as(watched, web_stack, user)
    await say(watched, "My name is Ana and I live in Porto.")
    await expect(page.locator("#facts .fact")).to_have_count(2)

    await page.click("#forget-user")
    # every owner confirms (200), or the page follows the forget request's status until they do
    await expect(page.locator("#profile-note")).to_have_text(
        "Everything remembered about you was forgotten.", timeout=30_000
    )
    await expect(page.locator("#facts .fact")).to_have_count(0)
    await expect(page.locator("#log")).to_contain_text("This conversation was forgotten with you.")
    assert (await profile_of(web_stack, user))["profile"] == {}
    await page.reload()
    await expect(page.locator("#profile-note")).to_contain_text("Nothing yet.")
    assert watched.console_errors == []


async def test_without_a_user_id_the_chat_is_anonymous(web_stack: Stack, watched: Watched) -> None:
    page = watched.page
    await page.add_init_script("localStorage.setItem('chatbus.user', '')")
    await open_chat(watched, web_stack, f"web-{uuid.uuid4().hex[:8]}")
    await expect(page.locator("#profile-note")).to_contain_text("No user id")
    await expect(page.locator("#fact-add")).to_be_hidden()
    await expect(page.locator("#forget-user")).to_be_hidden()
    async with page.expect_request("**/api/chat/*") as sent:
        await say(watched, "I live in Rome.")
    assert "user_id" not in ((await sent.value).post_data_json or {})
    await expect(page.locator("#facts .fact")).to_have_count(0)
    assert watched.console_errors == []
