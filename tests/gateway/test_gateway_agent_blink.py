"""An agent whose instances are gone for a moment (their NATS node died, they reconnect) is
waited for, briefly; one gone for good is a clear 503; only an agent never seen is a 404."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from chatbus.bus import Bus
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import RunningGateway


async def chat(http: aiohttp.ClientSession, gw: RunningGateway, agent: str, session: str) -> Any:
    body = {"message": "hello", "session_id": session}
    async with http.post(f"{gw.url}/api/chat/{agent}", json=body) as r:
        return r.status, await r.json()


async def test_an_agent_reconnecting_is_waited_for_and_one_gone_is_a_503(
    gateway: RunningGateway,
    nats_url: str,
    fake_llm: tuple[Any, str],
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    _, llm_url = fake_llm
    name = f"blink-{uid}"
    first = await Bus.connect(nats_url, service="stub")
    stub = await StubAgent(first, name, llm_url).start()
    assert (await chat(http, gateway, name, f"a{uid}"))[0] == 200
    await first.drain()  # every instance gone ...
    await stub.close()
    second = await Bus.connect(nats_url, service="stub")

    async def come_back() -> StubAgent:
        await asyncio.sleep(0.3)  # allowed: the fault being tested (back 0.3 s later)
        return await StubAgent(second, name, llm_url).start()

    back = asyncio.ensure_future(come_back())
    status, _ = await chat(http, gateway, name, f"b{uid}")  # ... and back meanwhile
    assert status == 200
    await (await back).close()
    await second.drain()
    status, body = await chat(http, gateway, name, f"c{uid}")  # gone for good
    assert (status, body["error"]["type"]) == (503, "unavailable")
    status, body = await chat(http, gateway, f"never-{uid}", f"d{uid}")
    assert (status, body["error"]["type"]) == (404, "not_found")
