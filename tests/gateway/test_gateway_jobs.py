"""Async jobs: queued, answered once, retried, dead-lettered, re-driven, expired."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from chatbus_dev.offline_llm import OfflineLLM
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, RunningGateway, StartGateway


async def submit(
    http: aiohttp.ClientSession, gw: RunningGateway, agent: str, message: str, hook: str
) -> str:
    async with http.post(
        f"{gw.url}/api/chat/{agent}?mode=async",
        json={"message": message, "session_id": message, "callback_url": hook},
    ) as r:
        assert r.status == 202, await r.text()
        body = await r.json()
        assert r.headers["Location"] == f"/api/jobs/{body['job_id']}"
        return str(body["job_id"])


async def job(http: aiohttp.ClientSession, gw: RunningGateway, job_id: str) -> tuple[int, Any]:
    async with http.get(f"{gw.url}/api/jobs/{job_id}") as r:
        return r.status, await r.json()


async def test_job_is_answered_and_called_back(
    gateway: RunningGateway, agent: StubAgent, callbacks: Callbacks, http: aiohttp.ClientSession
) -> None:
    job_id = await submit(http, gateway, agent.agent, "later please", callbacks.url)
    hook = await callbacks.next()
    assert hook["job_id"] == job_id and hook["status"] == "done"
    status, record = await job(http, gateway, job_id)
    assert status == 200 and record["status"] == "done" and record["attempts"] == 1
    assert "later please" in record["result"]["reply"]
    # Unknown ids are 404; ids older than the jobs' lifetime are 410.
    assert (await job(http, gateway, "job-1f00000000-0123456789abcdef"))[0] == 410
    assert (await job(http, gateway, "nope"))[0] == 404


async def test_dead_letter_after_max_deliveries_then_redrive(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
) -> None:
    llm, _ = fake_llm
    gw = await start_gateway(job_max_deliver=3, job_backoff_s=(0.05, 0.1))
    llm.fail_next(500, times=3)
    job_id = await submit(http, gw, agent.agent, "doomed at first", callbacks.url)
    hook = await callbacks.next()
    assert (hook["status"], hook["attempts"]) == ("dead_lettered", 3)
    assert "language model" in hook["error"]["message"]
    assert len(llm.requests_for(agent.agent)) == 3
    parked = await parked_jobs(http, gw, job_id)
    assert len(parked) == 1 and parked[0]["deliveries"] == 3
    async with http.post(f"{gw.url}/api/admin/dead-letters/{parked[0]['seq']}/redrive") as r:
        assert r.status == 200 and (await r.json())["job_id"] == job_id
    hook = await callbacks.next()
    assert (hook["job_id"], hook["status"]) == (job_id, "done")
    async with http.get(f"{gw.url}/api/admin/dead-letters?limit=1000") as r:
        assert job_id not in [p["job_id"] for p in (await r.json())["dead_letters"]]
    async with http.post(f"{gw.url}/api/admin/dead-letters/999999999/redrive") as r:
        assert r.status == 404


async def parked_jobs(http: aiohttp.ClientSession, gw: RunningGateway, job_id: str) -> list[Any]:
    """The job's entries on the dead-letter stream (parked just after its callback was sent)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        async with http.get(f"{gw.url}/api/admin/dead-letters?limit=1000") as r:
            parked = [p for p in (await r.json())["dead_letters"] if p["job_id"] == job_id]
        if parked or asyncio.get_running_loop().time() > deadline:
            return parked
        await asyncio.sleep(0.05)  # allowed: the DLQ publish follows the callback


def start_stub(agent: str, nats_url: str, llm_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NATS_URL": nats_url, "OPENAI_BASE_URL": llm_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.gw_agent_stub", agent],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"stub agent ready")
    return proc


@pytest.mark.e2e
async def test_jobs_survive_a_killed_agent_and_complete_once(
    start_gateway: StartGateway,
    nats_url: str,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    llm, llm_url = fake_llm
    llm.latency_s = 0.5
    agent = f"jobs-{uid}"
    gw = await start_gateway(
        request_timeout_s=1.5, job_backoff_s=(0.1, 0.2, 0.4), job_max_deliver=40
    )
    first = await asyncio.to_thread(start_stub, agent, nats_url, llm_url)
    try:
        ids = [await submit(http, gw, agent, f"job {i}", callbacks.url) for i in range(6)]
        await asyncio.wait_for(llm.on_request.wait(), 10)
        first.kill()  # mid-answer: the jobs in flight never get their reply
        first.wait()
        second = await asyncio.to_thread(start_stub, agent, nats_url, llm_url)
        try:
            hooks = [await callbacks.next(30) for _ in ids]
        finally:
            second.terminate()
            second.wait()
    finally:
        if first.poll() is None:
            first.kill()
    assert sorted(h["job_id"] for h in hooks) == sorted(ids)  # each exactly once
    for job_id in ids:
        status, record = await job(http, gw, job_id)
        assert status == 200 and record["status"] == "done"
        assert record["result"]["reply"]
    assert len(callbacks.received) == len(ids)


async def test_idempotency_key_queues_an_async_job_once(
    gateway: RunningGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
) -> None:
    llm, _ = fake_llm
    url = f"{gateway.url}/api/chat/{agent.agent}?mode=async"
    body = {"message": "only once please", "session_id": "idem-jobs", "callback_url": callbacks.url}
    ids = []
    for _ in range(2):
        async with http.post(url, json=body, headers={"Idempotency-Key": "k-42"}) as r:
            assert r.status == 202
            ids.append((await r.json())["job_id"])
    assert ids[0] == ids[1]
    hook = await callbacks.next()
    assert (hook["job_id"], hook["status"]) == (ids[0], "done")
    assert len(llm.requests_for(agent.agent)) == 1


class FlakyReceiver:
    """A callback receiver answering from a script of statuses (then 200), keeping requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.delivered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.delivered.put_nowait(json.loads(body))
        return web.json_response({"status": status}, status=status)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Callable[[list[int]], Awaitable[FlakyReceiver]]]:
    runners: list[web.AppRunner] = []

    async def make(statuses: list[int]) -> FlakyReceiver:
        hooks = FlakyReceiver(statuses)
        app = web.Application()
        app.router.add_post("/hook", hooks.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        hooks.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        return hooks

    yield make
    for r in runners:
        await r.cleanup()


async def job_until(
    http: aiohttp.ClientSession,
    gw: RunningGateway,
    job_id: str,
    ok: Callable[[dict[str, Any]], bool],
    timeout: float = 15,
) -> dict[str, Any]:
    """The job's record once ``ok(record)`` holds (polled, as a client would: no event)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, record = await job(http, gw, job_id)
        assert status == 200, record
        if ok(record):
            return dict(record)
        assert asyncio.get_running_loop().time() < deadline, record
        await asyncio.sleep(0.05)  # allowed: polling the job API, as a client would


def callback_is(outcome: str) -> Callable[[dict[str, Any]], bool]:
    return lambda record: record.get("callback") == outcome


async def test_callbacks_are_retried_signed_and_refusals_respected(
    start_gateway: StartGateway,
    agent: StubAgent,
    receiver: Callable[[list[int]], Awaitable[FlakyReceiver]],
    http: aiohttp.ClientSession,
) -> None:
    secret = "whsec-test-0123456789"
    gw = await start_gateway(
        callback_backoff_s=(0.05, 0.1), callback_max_deliver=3, callback_secret=secret
    )
    # Down twice (503, then a reset-like 502), then up: delivered once, on the third try.
    flaky = await receiver([503, 502])
    job_id = await submit(http, gw, agent.agent, "call me back", flaky.url)
    hook = await asyncio.wait_for(flaky.delivered.get(), 10)
    assert (hook["job_id"], hook["status"]) == (job_id, "done")
    assert len(flaky.requests) == 3
    headers, body = flaky.requests[-1]
    t, v1 = (part.split("=", 1)[1] for part in headers["X-Chatbus-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert headers["X-Chatbus-Job-Id"] == job_id
    await job_until(http, gw, job_id, callback_is("delivered (200)"))

    # A receiver that says "not here" is not asked again.
    gone = await receiver([404])
    job_id = await submit(http, gw, agent.agent, "nobody home", gone.url)
    await job_until(http, gw, job_id, callback_is("failed (404)"))
    assert len(gone.requests) == 1

    # Down for good: parked on the dead-letter stream after 3 tries, then re-driven.
    down = await receiver([503, 503, 503])
    job_id = await submit(http, gw, agent.agent, "still down", down.url)
    parked = await parked_jobs(http, gw, job_id)
    assert len(parked) == 1 and parked[0]["deliveries"] == 3
    assert parked[0]["subject"].endswith("callbacks")
    assert len(down.requests) == 3
    async with http.post(f"{gw.url}/api/admin/dead-letters/{parked[0]['seq']}/redrive") as r:
        assert r.status == 200 and (await r.json())["job_id"] == job_id
    hook = await asyncio.wait_for(down.delivered.get(), 10)
    assert hook["job_id"] == job_id and len(down.requests) == 4
