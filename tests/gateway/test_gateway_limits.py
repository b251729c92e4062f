"""Rate limits hold exactly across gateway replicas sharing Redis, with the standard headers."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from chatbus_dev.testing import ServiceFactory
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import StartGateway


@pytest.mark.e2e
async def test_ip_limit_holds_across_two_gateway_processes(
    service_factory: ServiceFactory, agent: StubAgent, http: aiohttp.ClientSession, uid: str
) -> None:
    env = {
        "RATE_IP_PER_MIN": "5",
        "REDIS_PREFIX": f"gwtest:{uid}:",
        "JOBS_STREAM": f"JOBS_{uid}",
        "JOBS_SUBJECT": f"test.{uid}.jobs",
        "CALLBACKS_STREAM": f"CALLBACKS_{uid}",
        "CALLBACKS_SUBJECT": f"test.{uid}.callbacks",
    }
    one, two = await asyncio.gather(
        service_factory.start("chatbus_gateway", **env),
        service_factory.start("chatbus_gateway", **env),
    )

    async def send(i: int) -> tuple[int, dict[str, str]]:
        gw = (one, two)[i % 2]
        async with http.post(
            f"{gw.url}/api/chat/{agent.agent}", json={"message": f"m{i}", "session_id": f"s{i}"}
        ) as r:
            return r.status, dict(r.headers)

    answers = await asyncio.gather(*(send(i) for i in range(12)))
    assert Counter(status for status, _ in answers) == {200: 5, 429: 7}
    assert len(agent.seen) == 5
    for status, headers in answers:
        assert headers["RateLimit-Limit"] == "5"
        assert 0 <= int(headers["RateLimit-Remaining"]) <= 4
        assert 0 < int(headers["RateLimit-Reset"]) <= 60
        if status == 429:
            assert 0 < int(headers["Retry-After"]) <= 60
    remaining = sorted(int(h["RateLimit-Remaining"]) for s, h in answers if s == 200)
    assert remaining == [0, 1, 2, 3, 4]
    # Every limited endpoint counts, not only chat.
    async with http.get(f"{one.url}/api/agents") as r:
        assert r.status == 429 and "ip" in (await r.json())["error"]["message"]


async def test_session_and_user_limits(
    start_gateway: StartGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(rate_ip_per_min=0, rate_session_per_min=2, rate_user_per_min=3)
    url = f"{gw.url}/api/chat/{agent.agent}"

    async def send(session: str, user: str) -> int:
        body = {"message": "hi", "session_id": session, "user_id": user}
        async with http.post(url, json=body) as r:
            return r.status

    assert [await send("a", "u1") for _ in range(3)] == [200, 200, 429]  # session limit
    # A refused request is not counted: u1 has used 2 of its 3.
    assert [await send("b", "u1") for _ in range(2)] == [200, 429]  # user limit
    assert await send("b", "u2") == 200


async def test_tokens_per_minute_per_key(
    start_gateway: StartGateway,
    agent: StubAgent,
    http: aiohttp.ClientSession,
    redis_url: str,
    uid: str,
) -> None:
    from chatbus.redis_link import RedisLink
    from chatbus_gateway.auth.keys import KeyStore

    gw = await start_gateway(auth="on", tokens_key_per_min=30, rate_ip_per_min=0)
    client = RedisLink(redis_url)
    key, _ = await KeyStore(client, f"gwtest:{uid}:").create("t")
    await client.close()
    auth = {"Authorization": f"Bearer {key}"}
    url = f"{gw.url}/api/chat/{agent.agent}"
    statuses = []
    for i in range(3):
        async with http.post(url, json={"message": "hi", "session_id": f"s{i}"}, headers=auth) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert "tokens" in (await r.json())["error"]["message"]
    # One answer of the offline model costs more than 30 tokens: the next one waits.
    assert statuses == [200, 429, 429]
