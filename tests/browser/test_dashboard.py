"""The dashboard in a real browser shows the numbers the APIs return, drawn as charts.

``CHATBUS_SCREENSHOTS=docs uv run pytest tests/browser`` also saves the screenshots the
README shows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.browser.conftest import Watched, screenshot
from tests.e2e.conftest import Stack


async def get(stack: Stack, path: str) -> Any:
    async with stack.http.get(stack.url + path) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def settled_usage(stack: Stack, requests: int) -> dict[str, Any]:
    """The 14-day usage once the cost service has counted at least ``requests`` calls."""
    deadline = time.monotonic() + 30
    while True:
        rep = await get(stack, "/api/usage?group_by=day&" + range_query())
        if rep["total"]["requests"] >= requests or time.monotonic() > deadline:
            return rep  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)  # allowed: polling the report, which has no change event


def range_query() -> str:
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=13)}&to={today}"


async def test_the_dashboard_draws_what_the_apis_say(web_stack: Stack, watched: Watched) -> None:
    stack, page = web_stack, watched.page
    session = f"dash-{uuid.uuid4().hex[:8]}"
    before = await get(stack, "/api/usage?group_by=day&" + range_query())
    for i, agent in enumerate(["support", "sales", "support"]):
        status, body = await stack.chat(agent, f"How much is plan {i}?", session)
        assert status == 200, body
    await settled_usage(stack, before["total"]["requests"] + 3)

    # Other tests' usage may still be arriving: compare the charts with what the page was given.
    def usage_by(group: str) -> Any:
        return lambda r: "/api/usage?" in r.url and f"group_by={group}" in r.url

    async with (
        page.expect_response(usage_by("day")) as day_answer,
        page.expect_response(usage_by("agent")) as agent_answer,
    ):
        await page.goto(stack.url + "/#dashboard")
    usage = await (await day_answer.value).json()
    by_agent = await (await agent_answer.value).json()
    assert usage["total"]["tokens"] > 0
    await page.wait_for_selector("#chart-days svg rect.bar", state="attached")
    await page.wait_for_selector("#agents .row")
    await page.wait_for_selector("#budgets .budget")
    # One bar per day, their values the day report's tokens.
    bars = await page.eval_on_selector_all(
        "#chart-days rect.bar", "rs => rs.map(r => [r.dataset.label, Number(r.dataset.value)])"
    )
    assert len(bars) == 14
    by_day = {row["key"]: row["tokens"] for row in usage["rows"]}
    assert dict(bars) == {day: by_day.get(day, 0) for day, _ in bars}
    assert sum(v for _, v in bars) == usage["total"]["tokens"]
    drawn = await page.eval_on_selector_all(
        "#by-agent .row", "rs => rs.map(r => [r.dataset.name, Number(r.dataset.value)])"
    )
    assert dict(drawn) == {row["key"]: row["tokens"] for row in by_agent["rows"]}
    assert {"support", "sales"} <= dict(drawn).keys()
    assert await page.locator("#by-model .row").count() >= 1

    agents = (await get(stack, "/api/agents"))["agents"]
    instances = await page.eval_on_selector_all(
        "#agents .row", "rs => rs.map(r => [r.dataset.name, Number(r.dataset.instances)])"
    )
    assert dict(instances) == {a["id"]: a["instances"] for a in agents}
    assert await page.inner_text("#kpi-instances") == str(sum(a["instances"] for a in agents))

    budgets = (await get(stack, "/api/budgets"))["budgets"]
    monthly = next(b for b in budgets if b["scope"] == "global")
    assert monthly["used"] > 0 and monthly["state"] == "ok"
    row = page.locator(f'#budgets .budget[data-name="{monthly["label"]}"]')
    assert float(await row.get_attribute("data-used") or -1) > 0
    assert "ok" in await row.inner_text()

    # this gateway's traffic: the three chats above, per minute and per agent
    stats = await get(stack, "/api/stats")
    counted = sum(m["requests"] for m in stats["per_minute"])
    assert counted >= 3
    assert int((await page.inner_text("#kpi-requests")).replace(",", "")) >= 3
    latency = await page.eval_on_selector_all(
        "#latency .row", "rs => rs.map(r => [r.dataset.name, Number(r.dataset.p95)])"
    )
    assert {"support", "sales"} <= dict(latency).keys()
    assert all(p95 > 0 for _, p95 in latency)
    assert await page.inner_text("#kpi-dead") == "0"
    assert await page.is_hidden("#dash-error")
    assert watched.bad_responses == []

    await screenshot(page, "dashboard")


async def test_a_tenant_key_is_kept_for_the_tab_and_sent_to_the_apis(
    web_stack: Stack, watched: Watched
) -> None:
    page = watched.page
    await page.goto(web_stack.url + "/#dashboard")
    await page.wait_for_selector("#chart-days svg", state="attached")
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.headers.get("authorization", "")))
    await page.fill("#key", "ck_example_key")
    await page.dispatch_event("#key", "change")
    await page.wait_for_selector("#refresh:not([disabled])")
    assert "Bearer ck_example_key" in seen
    assert await page.evaluate("sessionStorage.getItem('chatbus.key')") == "ck_example_key"
    assert await page.evaluate("localStorage.getItem('chatbus.key')") is None
