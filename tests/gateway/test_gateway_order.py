"""Per-session order across replicas (also when one dies holding the turn), idempotent
replays, and draining on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.testing import ServiceFactory
from chatbus_gateway.flow.order import STEP, SessionOrder
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


async def test_messages_sent_at_once_through_two_replicas_are_answered_one_after_another(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, _ = fake_llm
    llm.latency_s = 0.2
    gateways = [await start_gateway(), await start_gateway()]
    session = f"burst-{uid}"
    sent = [f"message {i}" for i in range(4)]
    results = await asyncio.gather(
        *(
            post(
                http,
                f"{gateways[i % 2].url}/api/chat/{agent.agent}",
                {"message": text, "session_id": session},
            )
            for i, text in enumerate(sent)
        )
    )
    assert [r[0] for r in results] == [200] * 4
    reply_to = {text: r[1]["reply"] for text, r in zip(sent, results, strict=True)}
    handled = [r.message for r in agent.seen if r.session_id == session]
    assert sorted(handled) == sent
    # One at a time: each message reached the model after every earlier one was answered.
    prompts = {r.messages[-1]["content"]: r.prompt_text for r in llm.requests_for(agent.agent)}
    for i, text in enumerate(handled):
        assert all(reply_to[earlier] in prompts[text] for earlier in handled[:i])


async def test_an_answer_longer_than_the_lease_keeps_its_turn(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, _ = fake_llm
    llm.push(Scripted(content="a slow first answer", delay_s=2.0))  # over three leases
    one = await start_gateway(session_turn_timeout_s=0.6)
    two = await start_gateway(session_turn_timeout_s=0.6)
    url = f"/api/chat/{agent.agent}"
    session = f"slow-{uid}"
    first = asyncio.create_task(post(http, one.url + url, {"message": "1", "session_id": session}))
    await asyncio.wait_for(llm.on_request.wait(), 5)
    status, _, _ = await post(http, two.url + url, {"message": "2", "session_id": session})
    assert status == 200 and (await first)[0] == 200
    second = next(r for r in llm.requests_for(agent.agent) if r.messages[-1]["content"] == "2")
    assert "a slow first answer" in second.prompt_text  # it waited for the first to finish


async def test_a_refused_message_neither_waits_for_the_turn_nor_keeps_a_place(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    redis_link: Any,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, _ = fake_llm
    llm.push(Scripted(content="the only answer", delay_s=1.5))
    gw = await start_gateway(rate_session_per_min=1)
    url, session = f"{gw.url}/api/chat/{agent.agent}", f"limited-{uid}"
    first = asyncio.create_task(post(http, url, {"message": "1", "session_id": session}))
    await asyncio.wait_for(llm.on_request.wait(), 5)
    started = time.monotonic()
    status, body, _ = await post(http, url, {"message": "2", "session_id": session})
    assert status == 429 and body["error"]["type"] == "rate_limited"
    assert time.monotonic() - started < 1.0  # refused at once, not after the first's answer
    assert (await first)[0] == 200
    order = SessionOrder(redis_link, gw.rt.bus, f"gwtest:{uid}:", lease_s=1.0)
    assert await redis_link.call("EXISTS", *order.keys("default", session)) == 0


async def test_a_crashed_turn_holder_never_wedges_the_session(
    start_gateway: StartGateway,
    agent: StubAgent,
    redis_link: Any,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    gw = await start_gateway(session_turn_timeout_s=1.0)
    # What a replica that took the session's turn and died leaves behind: its place at the head
    # of the session's queue, under a lease nobody renews.
    order = SessionOrder(redis_link, gw.rt.bus, f"gwtest:{uid}:", lease_s=1.0)
    keys = order.keys("default", "stuck")
    assert await redis_link.script(STEP)(keys=keys, args=["join", "dead-replica", 1000]) == 1
    started = time.monotonic()
    status, body, _ = await post(
        http, f"{gw.url}/api/chat/{agent.agent}", {"message": "anyone?", "session_id": "stuck"}
    )
    assert status == 200 and "anyone?" in body["reply"]
    assert 0.9 < time.monotonic() - started < 5
    assert await redis_link.call("EXISTS", *keys) == 0  # nothing left behind


async def test_a_message_still_waiting_at_its_deadline_gets_503_and_leaves_the_queue(
    start_gateway: StartGateway,
    agent: StubAgent,
    redis_link: Any,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    gw = await start_gateway(request_timeout_s=1.0)
    order = SessionOrder(redis_link, gw.rt.bus, f"gwtest:{uid}:", lease_s=30.0)
    keys = order.keys("default", "busy")
    assert await redis_link.script(STEP)(keys=keys, args=["join", "long-answer", 30_000]) == 1
    started = time.monotonic()
    status, body, headers = await post(
        http, f"{gw.url}/api/chat/{agent.agent}", {"message": "hello?", "session_id": "busy"}
    )
    assert status == 503 and body["error"]["type"] == "unavailable"
    assert headers["Retry-After"] == "1"
    assert 0.9 < time.monotonic() - started < 3
    assert await redis_link.call("LRANGE", keys[0], 0, -1) == [b"long-answer"]
    assert not agent.seen


async def test_when_the_replica_holding_the_turn_is_killed_the_next_message_goes_in_time(
    service_factory: ServiceFactory,
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    redis_link: Any,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, _ = fake_llm
    llm.push(Scripted(content="never delivered", delay_s=3))
    settings = {"session_turn_timeout_s": 1.0, "request_timeout_s": 8.0}
    doomed = await service_factory.start(
        "chatbus_gateway",
        CHATBUS_AUTH="off",
        REDIS_PREFIX=f"gwtest:{uid}:",
        JOBS_STREAM=f"JOBS_{uid}",
        JOBS_SUBJECT=f"test.{uid}.jobs",
        CALLBACKS_STREAM=f"CALLBACKS_{uid}",
        CALLBACKS_SUBJECT=f"test.{uid}.callbacks",
        JOBS_BUCKET=f"jobs_{uid}",
        **{k.upper(): str(v) for k, v in settings.items()},
    )
    survivor = await start_gateway(**settings)
    session = f"doomed-{uid}"
    url = f"/api/chat/{agent.agent}"
    first = asyncio.create_task(
        post(http, doomed.url + url, {"message": "first", "session_id": session})
    )
    await asyncio.wait_for(llm.on_request.wait(), 10)  # the doomed replica holds the turn
    second = asyncio.create_task(
        post(http, survivor.url + url, {"message": "second", "session_id": session})
    )
    queue = SessionOrder(redis_link, survivor.rt.bus, f"gwtest:{uid}:", 1.0).keys(
        "default", session
    )[0]
    for _ in range(250):  # bounded: until the second message waits in the session's queue
        if await redis_link.call("LLEN", queue) == 2:
            break
        await asyncio.sleep(0.02)  # allowed: bounded poll of the queue length
    assert await redis_link.call("LLEN", queue) == 2
    doomed.kill()  # SIGKILL: no goodbye, the lease is simply not renewed any more
    killed = time.monotonic()
    status, body, _ = await second
    assert status == 200 and "second" in body["reply"]
    assert time.monotonic() - killed < 4  # a lease and a look, well within its 8 s deadline
    assert [r.message for r in agent.seen if r.session_id == session] == ["first", "second"]
    with contextlib.suppress(aiohttp.ClientError):
        await first
