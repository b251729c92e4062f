"""A user who gives up on a (non-streamed) chat and closes the connection: the work stops and
writes nothing, as it does for a stream -- the next message does not see an answer the user
never got."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.conftest import TimedLLM, running_agent, sample, spec_for, until
from tests.gateway.gw_harness import StartGateway


async def test_a_user_closing_the_connection_of_a_sync_chat_leaves_no_turn(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 2.0
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=20)
    chat_url = f"{gateway.url}/api/chat/{spec.id}"
    async with running_agent(spec, nats_url, redis_url, url) as rt:
        async with aiohttp.ClientSession() as impatient:
            post = asyncio.ensure_future(
                impatient.post(chat_url, json={"message": "a slow one", "session_id": f"s{uid}"})
            )
            await until(lambda: len(llm.arrived) == 1)  # with the model now
            post.cancel()  # the user gives up: the connection closes

        def abandoned() -> float:
            return sample(rt.registry, "chatbus_messages_total", agent=spec.id, outcome="abandoned")

        await until(lambda: abandoned() == 1, timeout=10)  # the agent was told, and stopped
        llm.latency_s = 0.0
        async with http.post(chat_url, json={"message": "hello", "session_id": f"s{uid}"}) as r:
            assert r.status == 200, await r.text()
    roles = [m["role"] for m in llm.requests_for(spec.id)[-1].messages]
    assert roles == ["system", "user"], roles  # the answer nobody got is not in the history
    assert len(llm.arrived) == 2
