"""A job whose callback URL never answers: its callback is given up within the callback
timeout, tried on the backoff, then parked; other jobs' callbacks go out meanwhile; the job
itself stays done, answered once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from tests.faults.conftest import TimedLLM, running_agent, spec_for, until
from tests.gateway.gw_harness import Callbacks, StartGateway


class HungReceiver:
    """Reads each callback and never answers (the connection stays open)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls.append(time.monotonic())
        await self.release.wait()
        return web.json_response({"ok": True})


@pytest_asyncio.fixture
async def hung() -> AsyncIterator[tuple[HungReceiver, str]]:
    receiver = HungReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    receiver.release.set()
    await runner.cleanup()


async def test_a_hung_callback_url_is_given_up_and_parked_without_holding_back_others(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    hung: tuple[HungReceiver, str],
    callbacks: Callbacks,
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    receiver, hung_url = hung
    spec = spec_for(uid)
    gw = await start_gateway(
        callback_timeout_s=0.5, callback_backoff_s=(0.1,), callback_max_deliver=2
    )

    async def submit(message: str, hook: str) -> str:
        async with http.post(
            f"{gw.url}/api/chat/{spec.id}?mode=async",
            json={"message": message, "session_id": f"{message}{uid}", "callback_url": hook},
        ) as r:
            assert r.status == 202, await r.text()
            return str((await r.json())["job_id"])

    async with running_agent(spec, nats_url, redis_url, url):
        stuck = await submit("hung", hung_url)
        await until(lambda: len(receiver.calls) >= 1)  # its callback is hanging now
        fine = await submit("fine", callbacks.url)
        sent = time.monotonic()
        hook = await callbacks.next(timeout=10)
        assert hook["job_id"] == fine and time.monotonic() - sent < 3.0

        parked: list[Any] = []
        for _ in range(200):  # bounded poll: tried twice (0.5 s each), then parked
            async with http.get(f"{gw.url}/api/admin/dead-letters?limit=1000") as r:
                parked = [p for p in (await r.json())["dead_letters"] if p["job_id"] == stuck]
            if parked:
                break
            await asyncio.sleep(0.05)  # allowed: polling the dead-letter listing
        assert len(parked) == 1 and parked[0]["subject"].endswith("callbacks"), parked
        assert len(receiver.calls) == 2
        assert receiver.calls[1] - receiver.calls[0] < 0.5 + 0.1 + 1.0  # not stuck past its timeout
        async with http.get(f"{gw.url}/api/jobs/{stuck}") as r:
            record = await r.json()
    assert record["status"] == "done" and record["callback"] == "failed", record
    assert len(llm.arrived) == 2  # each job answered once
