"""Two tenants x every route that reads, writes or deletes: zero effects across tenants.

Tenant A fills every store through the API (chat, memory import, profile, async job, a record
an agent tool wrote); tenant B then uses the very same ids on every route, reading, writing
and deleting. B sees nothing of A's, and A's data is exactly as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.security.conftest import Stack, Tenant

SESSION, USER, TICKET = "shared-s", "shared-u", "T-1"


async def _call(
    http: aiohttp.ClientSession,
    stack: Stack,
    tenant: Tenant,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(
        method, stack.url + path, json=body, headers=tenant.auth, params=None
    ) as r:
        return r.status, await r.json()


async def _snapshot(http: aiohttp.ClientSession, stack: Stack, t: Tenant, job: str) -> Any:
    """Everything tenant ``t`` can read about the shared ids."""
    reads = [
        ("GET", f"/api/sessions/{SESSION}/messages", None),
        ("GET", "/api/sessions/imp-s/messages", None),
        ("POST", "/api/memory/search", {"session_id": SESSION, "query": "secret plan"}),
        ("POST", "/api/memory/search", {"user_id": USER, "scope": "user", "query": "plan"}),
        ("GET", f"/api/users/{USER}/profile", None),
        ("GET", f"/api/jobs/{job}", None),
        ("GET", "/api/tickets", None),
        ("GET", f"/api/tickets/{TICKET}", None),
    ]
    out = []
    for method, path, body in reads:
        status, answer = await _call(http, stack, t, method, path, body)
        if isinstance(answer, dict):  # what changes on every read
            answer.pop("updated_at", None)
            answer.pop("attempts", None)
            for hit in answer.get("results", []):
                hit.pop("score", None)
                hit.pop("similarity", None)
        out.append((method, path, status, answer))
    return out


async def _wait_for_memory(http: aiohttp.ClientSession, stack: Stack, t: Tenant) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, answer = await _call(http, stack, t, "GET", f"/api/sessions/{SESSION}/messages")
        if len(answer["messages"]) >= 2:
            return
        await asyncio.sleep(0.1)  # allowed: memory stores turns asynchronously (bounded poll)
    raise AssertionError("tenant A's turns never reached memory")


async def _wait_for_job(http: aiohttp.ClientSession, stack: Stack, t: Tenant, job: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, answer = await _call(http, stack, t, "GET", f"/api/jobs/{job}")
        if answer.get("status") == "done":
            return
        await asyncio.sleep(0.1)  # allowed: the job runs asynchronously (bounded poll)
    raise AssertionError("tenant A's job never finished")


async def test_a_second_tenant_using_the_same_ids_has_no_effect(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    a, b = stack.a, stack.b
    chat = f"/api/chat/{stack.agent}"
    # Tenant A fills every store.
    turn = {"message": "our secret plan is ready", "session_id": SESSION, "user_id": USER}
    assert (await _call(http, stack, a, "POST", chat, turn))[0] == 200
    transcript = [{"role": "user", "content": "the secret plan, imported"}]
    status, _ = await _call(http, stack, a, "POST", "/api/sessions/imp-s/messages", transcript)
    assert status == 201
    facts = {"city": "Lisbon", "plan": "enterprise"}
    assert (await _call(http, stack, a, "PATCH", f"/api/users/{USER}/profile", facts))[0] == 200
    status, job = await _call(
        http, stack, a, "POST", chat + "?mode=async", {**turn, "session_id": "job-s"}
    )
    assert status == 202
    await _wait_for_job(http, stack, a, job["job_id"])
    await stack.records.put(a.name, "ticket", TICKET, {"subject": "A's"}, user_id=USER)
    await _wait_for_memory(http, stack, a)
    before = await _snapshot(http, stack, a, job["job_id"])
    nothing_of_a = await _snapshot(http, stack, b, job["job_id"])

    # B sees nothing of A's under the same ids.
    statuses = {path: (status, answer) for _, path, status, answer in nothing_of_a}
    assert statuses[f"/api/sessions/{SESSION}/messages"][1]["messages"] == []
    assert statuses["/api/sessions/imp-s/messages"][1]["messages"] == []
    assert all(
        answer.get("results") == []
        for _, path, _, answer in nothing_of_a
        if path == "/api/memory/search"
    )
    assert statuses[f"/api/users/{USER}/profile"][1].get("profile") in ({}, None)
    assert statuses[f"/api/jobs/{job['job_id']}"][0] == 404
    assert statuses["/api/tickets"][1]["tickets"] == []
    assert statuses[f"/api/tickets/{TICKET}"][0] == 404
    assert (await _call(http, stack, b, "GET", f"/api/usage?tenant={a.name}"))[0] == 403
    assert (await _call(http, stack, b, "GET", "/api/admin/dead-letters"))[0] == 403
    assert (await _call(http, stack, b, "POST", "/api/admin/dead-letters/1/redrive"))[0] == 403

    # B writes and deletes under the same ids.
    assert (await _call(http, stack, b, "POST", chat, {**turn, "message": "B's words"}))[0] == 200
    b_transcript = [{"role": "user", "content": "B's import"}]
    status, _ = await _call(http, stack, b, "POST", "/api/sessions/imp-s/messages", b_transcript)
    assert status == 201
    b_facts = {"city": "Oslo"}
    assert (await _call(http, stack, b, "PATCH", f"/api/users/{USER}/profile", b_facts))[0] == 200
    for path in (f"/api/sessions/{SESSION}", "/api/sessions/imp-s", f"/api/users/{USER}"):
        status, _ = await _call(http, stack, b, "DELETE", path)
        assert status == 200

    # A's data is exactly as it was.
    assert await _snapshot(http, stack, a, job["job_id"]) == before
