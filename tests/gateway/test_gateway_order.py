"""Per-session order, idempotent replays, and draining on shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_gateway.flow.session_order import SessionOrder
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import RunningGateway, StartGateway


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], **kw: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(url, json=body, **kw) as r:
        return r.status, await r.json(), dict(r.headers)


async def test_one_session_in_order_different_sessions_in_parallel(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
) -> None:
    llm, _ = fake_llm
    llm.latency_s = 0.3
    # Two replicas: the order must hold whichever one a message lands on.
    one, two = await start_gateway(), await start_gateway()

    def send(gw: RunningGateway, message: str, session: str) -> Any:
        return post(
            http, f"{gw.url}/api/chat/{agent.agent}", {"message": message, "session_id": session}
        )

    first = asyncio.create_task(send(one, "first", "ordered"))
    await asyncio.wait_for(llm.on_request.wait(), 5)  # the first is with the model now
    started = time.monotonic()
    results = await asyncio.gather(
        first, send(two, "second", "ordered"), send(two, "elsewhere", "other")
    )
    assert [r[0] for r in results] == [200, 200, 200]
    assert [r.message for r in agent.seen if r.session_id == "ordered"] == ["first", "second"]
    second_prompt = next(r for r in llm.requests_for(agent.agent) if "second" in r.prompt_text)
    assert "first" in second_prompt.prompt_text  # it saw the first exchange in its history
    # "elsewhere" did not wait behind the busy session: 2 model calls in a row would be 0.6 s.
    assert time.monotonic() - started < 0.6 + 0.25


async def test_idempotent_replay_makes_one_llm_call(
    gateway: RunningGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, _ = fake_llm
    llm.push(Scripted(content="the one answer", delay_s=0.3))
    url = f"{gateway.url}/api/chat/{agent.agent}"
    body = {"message": "charge me once", "session_id": "s"}
    headers = {"Idempotency-Key": f"order-{uid}"}
    # Concurrent duplicates wait for the first; a later one replays it.
    results = await asyncio.gather(*(post(http, url, body, headers=headers) for _ in range(3)))
    results.append(await post(http, url, body, headers=headers))
    assert {r[0] for r in results} == {200}
    assert {r[1]["reply"] for r in results} == {"the one answer"}
    assert len({r[1]["request_id"] for r in results}) == 1
    assert sum(r[2].get("Idempotent-Replayed") == "true" for r in results) == 3
    assert len(llm.requests_for(agent.agent)) == 1
    # The same key for another request is a conflict, not a wrong replay.
    status, answer, _ = await post(
        http, url, {"message": "something else", "session_id": "s"}, headers=headers
    )
    assert status == 409 and answer["error"]["param"] == "Idempotency-Key"
    # A failed first attempt is not kept: the retry runs.
    llm.fail_next(500)
    retry = {"Idempotency-Key": f"retry-{uid}"}
    assert (await post(http, url, body, headers=retry))[0] == 502
    assert (await post(http, url, body, headers=retry))[0] == 200


async def test_sigterm_finishes_in_flight_and_refuses_new_work(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
) -> None:
    llm, _ = fake_llm
    llm.push(Scripted(content="finished anyway", delay_s=0.5))
    gw = await start_gateway()
    url = f"{gw.url}/api/chat/{agent.agent}"
    in_flight = asyncio.create_task(post(http, url, {"message": "slow", "session_id": "a"}))
    await asyncio.wait_for(llm.on_request.wait(), 5)
    gw.stop.set()  # what SIGTERM does; serve() marks itself draining on its next turn
    status, body, headers = await post(http, url, {"message": "new", "session_id": "b"})
    assert status == 503 and headers.get("Retry-After")
    status, body, _ = await in_flight
    assert (status, body["reply"]) == (200, "finished anyway")
    await asyncio.wait_for(gw.task, 10)


async def test_a_crashed_turn_holder_never_wedges_the_session(
    start_gateway: StartGateway,
    agent: StubAgent,
    bus: Any,
    redis_link: Any,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    gw = await start_gateway(session_turn_timeout_s=1.0)
    # Another replica took the session's turn and died holding it.
    order = SessionOrder(redis_link, bus, f"gwtest:{uid}:", turn_timeout_s=1.0)
    held = order.turn("default", "stuck", wait_s=1)
    await held.__aenter__()  # never exited: the crash
    started = time.monotonic()
    status, body, _ = await post(
        http, f"{gw.url}/api/chat/{agent.agent}", {"message": "anyone?", "session_id": "stuck"}
    )
    assert status == 200 and "anyone?" in body["reply"]
    assert 0.9 < time.monotonic() - started < 5
