"""Async jobs under faults: Redis lost, agents missing or dead, a long dead-letter stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatbus.bus import Bus
from chatbus.contracts.jobs import ChatJob
from chatbus.dead_letters import page_dead_letters
from chatbus.jetstream import DLQ_PREFIX, DLQ_STREAM
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.servers import start_redis
from chatbus_gateway.api.schemas import JobOut
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, RunningGateway, StartGateway
from tests.gateway.test_gateway_jobs import job, job_until, submit


async def wait_status(
    http: aiohttp.ClientSession, gw: RunningGateway, job_id: str, status: str
) -> dict[str, Any]:
    return await job_until(http, gw, job_id, lambda r: r["status"] == status)


@pytest.mark.e2e
async def test_accepted_jobs_survive_losing_redis_and_all_complete(
    start_gateway: StartGateway,
    bus: Bus,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
    tmp_path: Path,
) -> None:
    redis = start_redis(data_dir=tmp_path / "redis")  # no persistence, as ./dev up and CI run it
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    try:
        gw = await start_gateway(redis_url=redis.url, job_agent_poll_s=0.2)
        name = f"late-{uid}"
        # No instance of the agent yet: every job is accepted and waits.
        ids = [await submit(http, gw, name, f"job {i} {uid}", callbacks.url) for i in range(12)]
        await wait_status(http, gw, ids[-1], "waiting")
        redis.stop()  # every key gone: the restarted server is empty
        redis = start_redis(port, data_dir=tmp_path / "redis2")
        _, llm_url = fake_llm
        stub = await StubAgent(bus, name, llm_url).start()
        try:
            hooks = [await callbacks.next(30) for _ in ids]
        finally:
            await stub.close()
        assert sorted(h["job_id"] for h in hooks) == sorted(ids)
        for job_id in ids:
            code, record = await job(http, gw, job_id)
            assert code == 200 and record["status"] == "done", record
            # Waiting for an instance is not an attempt: one attempt, the one that answered.
            assert record["attempts"] == 1 and record["result"]["reply"]
    finally:
        redis.stop()


async def test_jobs_for_a_missing_agent_wait_then_run_without_burning_attempts(
    start_gateway: StartGateway,
    bus: Bus,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    agent: StubAgent,
    uid: str,
) -> None:
    llm, llm_url = fake_llm
    gw = await start_gateway(job_max_deliver=2, job_agent_poll_s=0.05, job_concurrency=2)
    name = f"away-{uid}"
    waiting = [await submit(http, gw, name, f"wait {i}", callbacks.url) for i in range(6)]
    # Far more redeliveries than job_max_deliver happen while nobody runs the agent...
    await asyncio.sleep(1.0)  # allowed: letting the waiting jobs be asked again many times
    for job_id in waiting:
        record = await wait_status(http, gw, job_id, "waiting")
        JobOut.model_validate(record)  # what /openapi.json documents
        assert record["attempts"] == 0
        assert "no instance" in str(record["error"])
    # ...and the six of them hold none of the two worker slots: a live agent's job is answered.
    live = await submit(http, gw, agent.agent, "meanwhile", callbacks.url)
    assert (await callbacks.next(10))["job_id"] == live
    stub = await StubAgent(bus, name, llm_url).start()
    try:
        hooks = [await callbacks.next(20) for _ in waiting]
    finally:
        await stub.close()
    assert sorted(h["job_id"] for h in hooks) == sorted(waiting)
    assert all(h["status"] == "done" and h["attempts"] == 1 for h in hooks)
    assert len(llm.requests_for(name)) == len(waiting)


def _job_id(data: bytes) -> str | None:
    """The job a dead letter holds; None for other messages (other tests park callbacks)."""
    try:
        return ChatJob.from_bytes(data).job_id
    except ValueError:
        return None


async def parked_job(bus: Bus, job_id: str, timeout: float = 10.0) -> list[Any]:
    """The dead letters holding ``job_id``, once the listing shows it (bounded poll)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = await page_dead_letters(bus, limit=1000)
        parked = [p for p in page.items if _job_id(p.data) == job_id]
        if parked or asyncio.get_running_loop().time() > deadline:
            return parked
        await asyncio.sleep(0.05)  # allowed: the job is parked right after its callback


async def test_a_job_waits_at_most_the_documented_bound_then_is_parked_and_redrivable(
    start_gateway: StartGateway,
    bus: Bus,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    gw = await start_gateway(job_agent_wait_max_s=0.6, job_agent_poll_s=0.05)
    name = f"gone-{uid}"
    job_id = await submit(http, gw, name, "anyone?", callbacks.url)
    hook = await callbacks.next(10)
    assert (hook["job_id"], hook["status"], hook["attempts"]) == (job_id, "dead_lettered", 0)
    assert "no instance" in hook["error"]["message"]
    # The callback is queued just before the job's message is parked: the admin listing may
    # show it a moment later, as an operator refreshing it would see.
    parked = await parked_job(bus, job_id)
    assert parked, "the job never reached the dead-letter listing"
    _, llm_url = fake_llm
    stub = await StubAgent(bus, name, llm_url).start()
    try:
        async with http.post(f"{gw.url}/api/admin/dead-letters/{parked[0].seq}/redrive") as r:
            assert r.status == 200
        hook = await callbacks.next(10)
    finally:
        await stub.close()
    assert (hook["job_id"], hook["status"], hook["attempts"]) == (job_id, "done", 1)


async def test_dead_letters_page_through_every_entry(
    gateway: RunningGateway, bus: Bus, http: aiohttp.ClientSession, uid: str
) -> None:
    subject = f"{DLQ_PREFIX}paging.{uid}"
    for i in range(230):
        await bus.js.publish(subject, f"{i}".encode(), headers={"Chatbus-Dlq-Subject": subject})
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        async with http.get(f"{gateway.url}/api/admin/dead-letters?limit=100&after={after}") as r:
            assert r.status == 200
            body = await r.json()
        pages += 1
        assert len(body["dead_letters"]) <= 100
        seen += [p["seq"] for p in body["dead_letters"] if p["subject"] == subject]
        if body["next_after"] is None:
            break
        after = body["next_after"]
    assert len(seen) == 230 and seen == sorted(set(seen)) and pages >= 3
    await bus.js.purge_stream(DLQ_STREAM, subject=subject)  # others' tests read the DLQ too
    for bad in ("0", "1001", "%C2%B2", "-1", "1e3", "9" * 30):
        async with http.get(f"{gateway.url}/api/admin/dead-letters?limit={bad}") as r:
            assert r.status == 422 and (await r.json())["error"]["param"] == "limit"
    for bad in ("-1", "%C2%B2", "x", "9" * 30):
        async with http.get(f"{gateway.url}/api/admin/dead-letters?after={bad}") as r:
            assert r.status == 422 and (await r.json())["error"]["param"] == "after"
    async with http.post(f"{gateway.url}/api/admin/dead-letters/%C2%B2/redrive") as r:
        assert r.status == 404
