"""A user talking to the system over HTTP, with every service a real process."""

from __future__ import annotations

import asyncio
import re
import uuid

import aiohttp

from chatbus_dev.offline_llm import Scripted
from tests.e2e.conftest import Stack


def sid() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


async def test_each_agent_answers_with_its_own_system_prompt(stack: Stack) -> None:
    for agent, persona in (("support", "customer support agent"), ("sales", "sales agent")):
        status, body = await stack.chat(agent, "Hello!", sid())
        assert status == 200, body
        assert body["agent"] == agent
        assert "[offline model]" in str(body["reply"]) and agent in str(body["reply"])
        assert body["request_id"] and body["session_id"]
        usage = body["usage"]
        assert isinstance(usage, dict) and usage["prompt_tokens"] > 0
        assert persona in stack.llm.requests_for(agent)[-1].system


async def test_follow_up_sees_the_earlier_turns(stack: Stack) -> None:
    session = sid()
    await stack.chat("support", "My order number is 4471", session)
    status, _ = await stack.chat("support", "Where is it?", session)
    assert status == 200
    sent = stack.llm.requests_for("support")[-1].messages
    assert {"role": "user", "content": "My order number is 4471"} in sent
    assert sent[-1] == {"role": "user", "content": "Where is it?"}


async def test_agents_are_discovered_on_the_bus(stack: Stack) -> None:
    async with stack.http.get(f"{stack.url}/api/agents") as r:
        assert r.status == 200
        body = await r.json()
    agents = {a["id"]: a for a in body["agents"]}
    assert {"support", "sales"} <= set(agents)
    assert agents["support"]["instances"] >= 1
    assert agents["sales"]["label"] == "Sales"


async def test_unknown_agent_is_404_at_once(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await stack.chat("nobody-here", "hi", sid())
    assert status == 404 and "error" in body
    assert loop.time() - started < 2


async def test_bad_input_gets_clear_client_errors(stack: Stack) -> None:
    url = f"{stack.url}/api/chat/support"
    async with stack.http.post(url, json={"session_id": "x"}) as r:
        assert r.status in (400, 422)
        assert "message" in (await r.text())
    async with stack.http.post(url, json={"message": "", "session_id": "x"}) as r:
        assert r.status in (400, 422)
    async with stack.http.post(url, json={"message": 5, "session_id": "x"}) as r:
        assert r.status in (400, 422)
    async with stack.http.post(
        url, data=b"{not json", headers={"content-type": "application/json"}
    ) as r:
        assert r.status == 400
        assert "error" in await r.json()
    async with stack.http.post(url, json={"message": "x" * 70_000, "session_id": "x"}) as r:
        assert r.status == 413
    async with stack.http.post(url, json={"message": "x" * 9_000, "session_id": "x"}) as r:
        assert r.status == 422
        assert "message" in await r.text()


async def test_silent_agent_gives_504(stack: Stack) -> None:
    impatient = await stack.factory.start(
        "chatbus_gateway", CHATBUS_AUTH="off", RATE_IP_PER_MIN="0", REQUEST_TIMEOUT_S="0.5"
    )
    stack.llm.push(Scripted(content="too late", delay_s=3))
    async with stack.http.post(
        f"{impatient.url}/api/chat/sales", json={"message": "slow one", "session_id": sid()}
    ) as r:
        assert r.status == 504
        assert "error" in await r.json()
    impatient.stop()


def handled(metrics_text: str, agent: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("chatbus_messages_total{") and f'agent="{agent}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_replicas_both_take_work(stack: Stack) -> None:
    second = await stack.factory.start("agent_support", **stack.agent_env())
    try:

        async def metrics(url: str) -> str:
            async with stack.http.get(f"{url}/metrics") as r:
                return await r.text()

        before = [handled(await metrics(p.url), "support") for p in (stack.support, second)]
        results = await asyncio.gather(
            *(stack.chat("support", f"hi {i}", sid()) for i in range(30))
        )
        assert all(status == 200 for status, _ in results)
        after = [handled(await metrics(p.url), "support") for p in (stack.support, second)]
        done = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(done) == 30
        assert done[0] > 0 and done[1] > 0
    finally:
        second.stop()


async def test_logs_are_json_and_never_contain_the_api_key(stack: Stack) -> None:
    await stack.chat("support", "log check", sid())
    text = stack.support.log.read_text()
    assert "sk-test-e2e-secret" not in text
    assert re.search(r'^\{"timestamp"', text, re.M)


async def test_gateway_metrics_and_health(stack: Stack) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        async with stack.http.get(stack.url + path) as r:
            assert r.status == 200, path
    async with aiohttp.ClientSession() as s, s.get(f"{stack.url}/openapi.json") as r:
        spec = await r.json()
    assert "/api/chat/{agent_id}" in spec["paths"]


async def test_llm_down_is_a_clear_502(stack: Stack) -> None:
    # every attempt fails: retries on the main model, then the fallback model
    stack.llm.fail_next(500, times=6)
    status, body = await stack.chat("sales", f"anyone there {uuid.uuid4().hex[:6]}?", sid())
    assert status == 502
    assert "LLM" in str(body["error"])
    status, _ = await stack.chat("sales", "and now?", sid())
    assert status == 200


async def test_a_browser_gets_a_chat_page(stack: Stack) -> None:
    async with stack.http.get(f"{stack.url}/") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        page = await r.text()
    for script in re.findall(r'<script src="([^"]+)"', page):  # the page's own scripts
        async with stack.http.get(stack.url + script) as r:
            assert r.status == 200, script
            page += await r.text()
    # the page lists agents, streams replies from the chat endpoint, and can forget a session
    # (tests/browser drives it in a real browser)
    for needle in (
        'id="agent"',
        "/api/agents",
        "/api/chat/",
        "text/event-stream",
        "/api/sessions/",
        'id="message"',
    ):
        assert needle in page
    # what the page's script sends gets a streamed answer
    body = {"message": "from the page", "session_id": sid()}
    async with stack.http.post(
        f"{stack.url}/api/chat/support", json=body, headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.status == 200
        text = await r.text()
    assert "event: chunk" in text
    assert "event: done" in text
