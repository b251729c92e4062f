"""A gateway told to stop (SIGTERM) with chats, streams and async jobs in flight: every one is
answered once -- the streams and chats by it while it drains, the jobs by it or by the other
gateway -- and each question reaches the model once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.faults.conftest import TimedLLM, Traffic, running_agent, spec_for, sse_events, until
from tests.gateway.gw_harness import StartGateway


async def test_sigterm_with_chats_streams_and_jobs_in_flight_loses_and_repeats_nothing(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 1.5  # everything is with the model when the stop comes
    spec = spec_for(uid)
    stopping = await start_gateway(request_timeout_s=20, rate_ip_per_min=0)
    other = await start_gateway(request_timeout_s=20, rate_ip_per_min=0)  # shares the jobs queue

    traffic = Traffic(http, stopping.url, spec.id, uid)
    chat, stream, submit = traffic.chat, traffic.stream, traffic.submit

    async with running_agent(spec, nats_url, redis_url, url):
        jobs = [await submit(i) for i in range(4)]
        chats = [asyncio.create_task(chat(i)) for i in range(3)]
        streams = [asyncio.create_task(stream(i)) for i in range(3)]
        await until(lambda: len(llm.arrived) >= 10)  # every one is with the model
        stopping.stop.set()  # what SIGTERM does
        for status, body in await asyncio.gather(*chats):
            assert status == 200, body
        for status, text in await asyncio.gather(*streams):
            assert status == 200 and sse_events(text)[-1][0] == "done", text
        await asyncio.wait_for(stopping.task, 30)  # it stopped, cleanly

        records: dict[str, Any] = {}

        async def all_done() -> bool:
            for job_id in jobs:
                async with http.get(f"{other.url}/api/jobs/{job_id}") as r:
                    records[job_id] = await r.json()
            return all(rec.get("status") == "done" for rec in records.values())

        for _ in range(300):  # bounded: jobs cut off by the stop are delivered again
            if await all_done():
                break
            await asyncio.sleep(0.1)  # allowed: polling the jobs' records
        assert all(rec.get("status") == "done" for rec in records.values()), records

    asked = [r.messages[-1]["content"] for r in llm.requests_for(spec.id)]
    expected = [f"chat {i}" for i in range(3)] + [f"stream {i}" for i in range(3)]
    expected += [f"job {i}" for i in range(4)]
    assert sorted(asked) == sorted(expected)  # each question once: nothing paid twice
