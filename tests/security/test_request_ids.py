"""A caller's X-Request-Id is a label only: it cannot merge, drop or overwrite anything.

Issue 10, defects 2 and 3: the token ledger and the memory de-duplication ids were keyed by
the caller's X-Request-Id, so a fixed id bypassed TOKENS_KEY_PER_MIN and another tenant's (or
the same session's) reuse of an id made a turn vanish from memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import StartGateway
from tests.security.conftest import RememberingAgent, Tenant


async def _chat(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(), r.headers.copy()


async def test_a_fixed_request_id_does_not_bypass_the_token_limit(
    start_gateway: StartGateway,
    agent: StubAgent,
    http: aiohttp.ClientSession,
    tenants: tuple[Tenant, Tenant],
) -> None:
    gw = await start_gateway(auth="on", tokens_key_per_min=100, rate_ip_per_min=0)
    a, _ = tenants
    headers = {**a.auth, "X-Request-Id": "fixed-id"}
    url = f"{gw.url}/api/chat/{agent.agent}"
    statuses = []
    for i in range(8):
        status, _, answer_headers = await _chat(
            http, url, {"message": "hi", "session_id": f"s{i}"}, headers
        )
        statuses.append(status)
        assert answer_headers.get("X-Request-Id") == "fixed-id"  # still echoed as a label
    # One offline answer costs more than 30 tokens: at most 4 fit in 100 per minute.
    assert 1 <= statuses.count(200) <= 4, statuses
    assert statuses[statuses.count(200) :] == [429] * (8 - statuses.count(200)), statuses


async def _history(
    http: aiohttp.ClientSession, url: str, tenant: Tenant, session: str
) -> list[str]:
    async with http.get(f"{url}/api/sessions/{session}/messages", headers=tenant.auth) as r:
        assert r.status == 200, await r.text()
        return [m["content"] for m in (await r.json())["messages"]]


async def _wait_history(
    http: aiohttp.ClientSession, url: str, tenant: Tenant, session: str, count: int
) -> list[str]:
    """The session's stored turns once ``count`` are there (bounded poll: indexing is async)."""
    deadline = time.monotonic() + 30
    while True:
        contents = await _history(http, url, tenant, session)
        if len(contents) >= count or time.monotonic() > deadline:
            return contents
        await asyncio.sleep(0.1)  # allowed: polling the memory service's public API


async def test_another_tenant_reusing_a_request_id_does_not_drop_a_turn(
    start_gateway: StartGateway,
    remembering_agent: RememberingAgent,
    http: aiohttp.ClientSession,
    tenants: tuple[Tenant, Tenant],
) -> None:
    gw = await start_gateway(auth="on", rate_ip_per_min=0)
    a, b = tenants
    url = f"{gw.url}/api/chat/{remembering_agent.agent}"
    # B sends r9 first; A's turn sent with r9 must still be stored in A's history.
    status, _, _ = await _chat(
        http,
        url,
        {"message": "B speaks first", "session_id": "b-s"},
        {**b.auth, "X-Request-Id": "r9"},
    )
    assert status == 200
    status, _, _ = await _chat(
        http,
        url,
        {"message": "A's own words", "session_id": "a-s"},
        {**a.auth, "X-Request-Id": "r9"},
    )
    assert status == 200
    history = await _wait_history(http, gw.url, a, "a-s", 2)
    assert history[:1] == ["A's own words"] and len(history) == 2
    b_history = await _wait_history(http, gw.url, b, "b-s", 2)
    assert b_history[:1] == ["B speaks first"] and len(b_history) == 2


async def test_reusing_a_request_id_in_one_session_keeps_both_exchanges(
    start_gateway: StartGateway,
    remembering_agent: RememberingAgent,
    http: aiohttp.ClientSession,
    tenants: tuple[Tenant, Tenant],
) -> None:
    gw = await start_gateway(auth="on", rate_ip_per_min=0)
    a, _ = tenants
    url = f"{gw.url}/api/chat/{remembering_agent.agent}"
    headers = {**a.auth, "X-Request-Id": "same-id"}
    ids = []
    for text in ("first question", "second question"):
        status, body, _ = await _chat(http, url, {"message": text, "session_id": "one"}, headers)
        assert status == 200
        ids.append(body["request_id"])
    assert ids[0] != ids[1]  # the exchanges have their own, server-made ids
    history = await _wait_history(http, gw.url, a, "one", 4)
    assert [history[0], history[2]] == ["first question", "second question"], history
