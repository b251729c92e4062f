"""End to end over HTTP: the gateway and both agents as processes, the fake LLM scripted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.testing import ServiceFactory
from tests.collab.collab_harness import call

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@dataclass
class Stack:
    url: str
    llm: OfflineLLM
    http: aiohttp.ClientSession

    async def chat(self, agent: str, message: str, session: str) -> dict[str, Any]:
        body = {"message": message, "session_id": session, "user_id": f"user-{session}"}
        async with self.http.post(f"{self.url}/api/chat/{agent}", json=body) as r:
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
            return data


@pytest_asyncio.fixture
async def stack(
    service_factory: ServiceFactory, fake_llm: tuple[OfflineLLM, str]
) -> AsyncIterator[Stack]:
    llm, url = fake_llm
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "test", "MEMORY_ENABLED": "false",
           "COST_ENABLED": "false", "CACHE_ENABLED": "false"}  # fmt: skip
    await service_factory.start("agent_support", **env)
    await service_factory.start("agent_sales", **env)
    gateway = await service_factory.start("chatbus_gateway", CHATBUS_AUTH="off")
    async with aiohttp.ClientSession() as http:
        yield Stack(gateway.url, llm, http)


async def test_support_hands_the_customer_to_sales_over_http_and_openai_api(
    stack: Stack, uid: str
) -> None:
    session = f"web{uid}"
    stack.llm.push(
        call("transfer_to_sales", reason="enterprise plan"),
        Scripted(content="Enterprise costs 45 USD per seat."),
    )
    first = await stack.chat("support", "How do I buy the enterprise plan?", session)
    assert first["agent"] == "sales" and first["handoff_from"] == "support"
    assert first["reply"] == "Enterprise costs 45 USD per seat."

    # The next message, still addressed to support, is answered by sales.
    stack.llm.push(Scripted(content="Yes, yearly billing is 10% off."))
    second = await stack.chat("support", "Is there yearly billing?", session)
    assert (second["agent"], second["handoff_from"]) == ("sales", "support")

    # The OpenAI-compatible API behind model="support" follows the same route.
    stack.llm.push(Scripted(content="Annual invoices are possible."))
    body = {"model": "support", "messages": [{"role": "user", "content": "Invoice yearly?"}]}
    async with stack.http.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"X-Session-Id": session}
    ) as r:
        assert r.status == 200, await r.text()
        completion = await r.json()
    assert completion["choices"][0]["message"]["content"] == "Annual invoices are possible."
    assert completion["agent"] == "sales"

    # Streaming: sales' chunks reach the client, and the done event names sales.
    stack.llm.push(call("transfer_to_support"), Scripted(content="Support here, what broke?"))
    events: list[tuple[str, Any]] = []
    async with stack.http.post(
        f"{stack.url}/api/chat/support",
        json={"message": "My order 4471 is broken", "session_id": session},
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status == 200
        name = ""
        async for line in r.content:
            text = line.decode().strip()
            if text.startswith("event:"):
                name = text[6:].strip()
            elif text.startswith("data:"):
                events.append((name, json.loads(text[5:])))
    done = [data for kind, data in events if kind == "done"]
    assert done and (done[0]["agent"], done[0]["handoff_from"]) == ("support", "sales")
    streamed = "".join(data["delta"] for kind, data in events if kind == "chunk")
    assert streamed == "Support here, what broke?"

    # Handed back: support answers again without any forwarding.
    stack.llm.push(Scripted(content="Thanks for waiting."))
    last = await stack.chat("support", "ok", session)
    assert last["agent"] == "support" and "handoff_from" not in last
