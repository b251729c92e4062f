"""The chat page in a real browser: agents, a streamed reply, a handoff, Forget, errors."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.browser.conftest import Watched, screenshot
from tests.e2e.conftest import Stack


async def open_chat(w: Watched, stack: Stack, session: str) -> None:
    page = w.page
    await page.add_init_script(f"localStorage.setItem('chatbus.session', '{session}')")
    await page.goto(stack.url + "/")
    await page.wait_for_selector("#agent:not([disabled])")


async def history_of(stack: Stack, session: str, count: int) -> list[dict[str, str]]:
    """The session's stored messages once there are ``count`` of them (stored after the reply)."""
    deadline = time.monotonic() + 15
    while True:
        async with stack.http.get(f"{stack.url}/api/sessions/{session}/messages") as r:
            messages: list[dict[str, str]] = (await r.json())["messages"]
        if len(messages) == count or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.1)  # allowed: the history has no change event to wait on


async def say(w: Watched, text: str) -> None:
    await w.page.fill("#message", text)
    await w.page.press("#message", "Enter")
    await w.page.wait_for_selector("#send:not([disabled])")  # the reply (or error) is in


async def test_pick_an_agent_and_see_the_reply_stream_in(
    web_stack: Stack, watched: Watched
) -> None:
    page, session = watched.page, f"web-{uuid.uuid4().hex[:8]}"
    await open_chat(watched, web_stack, session)
    options = await page.eval_on_selector_all("#agent option", "os => os.map(o => o.value)")
    assert {"sales", "support"} <= set(options)
    await page.select_option("#agent", "support")
    async with page.expect_response("**/api/chat/support") as got:
        await say(watched, "Hello from a browser")
    assert (await got.value).headers["content-type"].startswith("text/event-stream")
    reply = page.locator(".msg.bot").last
    assert "[offline model]" in await reply.locator(".body").inner_text()
    assert await reply.locator(".meta").inner_text() == "support"
    # drawn from the stream's chunk events (one per word of the offline model), then settled
    assert int(await reply.get_attribute("data-chunks") or 0) > 5
    history = await history_of(web_stack, session, 2)
    shown = await reply.locator(".body").inner_text()
    assert {(m["role"], m["content"]) for m in history} == {
        ("user", "Hello from a browser"),
        ("assistant", shown),
    }
    assert watched.bad_responses == []  # the favicon and every static file were found
    assert watched.console_errors == []


async def test_a_handoff_moves_the_conversation_to_sales(
    web_stack: Stack, watched: Watched
) -> None:
    page = watched.page
    await open_chat(watched, web_stack, f"web-{uuid.uuid4().hex[:8]}")
    await page.select_option("#agent", "support")
    # the offline model recognises the ask and calls transfer_to_sales, as a real model would
    await say(watched, "I want to buy the enterprise plan, please transfer me to sales")
    meta = page.locator(".msg.bot").last.locator(".meta")
    assert "handed over from support" in await meta.inner_text()
    assert (await meta.inner_text()).startswith("sales")
    assert await page.input_value("#agent") == "sales"  # the next message goes to sales
    await screenshot(page, "chat")


async def test_forget_empties_the_conversation(web_stack: Stack, watched: Watched) -> None:
    page, session = watched.page, f"web-{uuid.uuid4().hex[:8]}"
    await open_chat(watched, web_stack, session)
    await say(watched, "Remember that my order is 4411")
    assert len(await history_of(web_stack, session, 2)) == 2
    await page.reload()  # the page shows the session's stored conversation
    await page.wait_for_selector(".msg.bot")
    assert await page.locator(".msg").count() == 2
    await page.click("#forget")
    await page.wait_for_selector("text=This conversation was forgotten.")
    assert await page.locator(".msg").count() == 0
    assert await history_of(web_stack, session, 0) == []
    await page.reload()
    await page.wait_for_selector("text=Pick an agent and say hello.")
    assert await page.locator(".msg").count() == 0


async def test_an_unreachable_model_reads_as_words(web_stack: Stack, watched: Watched) -> None:
    page = watched.page
    await open_chat(watched, web_stack, f"web-{uuid.uuid4().hex[:8]}")
    await page.select_option("#agent", "sales")  # its circuit breaker may open: not support's
    web_stack.llm.fail_next(503, times=40)  # every retry and the fallback fail
    try:
        await say(watched, f"Are you there? {uuid.uuid4().hex[:6]}")
    finally:
        web_stack.llm.script.clear()
    error = page.locator(".error").last
    text = await error.inner_text()
    assert "language model" in text, text
    assert "object Object" not in text
    assert "HTTP 5" in text  # the status, as the JSON error carries it
    # the agent's empty bubble is gone: only the user's message is left
    assert await page.locator(".msg.bot").count() == 0
    assert await page.locator(".msg.user").count() == 1


async def test_a_phone_sized_screen_shows_the_whole_input_hint(
    web_stack: Stack, watched: Watched
) -> None:
    page = watched.page
    await page.set_viewport_size({"width": 390, "height": 844})
    await open_chat(watched, web_stack, f"web-{uuid.uuid4().hex[:8]}")
    for selector in ("#message", ".hint", "#send", "#forget"):
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    clipped = await page.eval_on_selector(".hint", "e => e.scrollWidth > e.clientWidth")
    assert not clipped
    await screenshot(page, "chat-phone")
