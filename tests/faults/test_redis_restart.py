"""Redis (no persistence, as `./dev up` and CI run it) killed and restarted empty while chats,
streams and async jobs are with the model: every one is answered once, none paid twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from chatbus_dev.servers import ServerProcess, free_port, start_redis
from tests.faults.conftest import TimedLLM, Traffic, running_agent, spec_for, sse_events, until
from tests.gateway.gw_harness import StartGateway


class RestartableRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.server: ServerProcess = start_redis(self.port)
        self.url = self.server.url

    def kill_and_restart(self) -> None:
        self.server.proc.kill()  # kill -9: everything it held is gone
        self.server.proc.wait()
        self.server = start_redis(self.port)


@pytest.fixture
def own_redis() -> Iterator[RestartableRedis]:
    redis = RestartableRedis()
    yield redis
    redis.server.stop()


async def test_a_redis_restart_with_work_in_flight_answers_everything_once(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    own_redis: RestartableRedis,
    nats_url: str,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 1.5  # everything is with the model when Redis dies
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=20, redis_url=own_redis.url, rate_ip_per_min=0)

    traffic = Traffic(http, gateway.url, spec.id, uid)
    chat, stream, submit = traffic.chat, traffic.stream, traffic.submit

    async with running_agent(spec, nats_url, own_redis.url, url):
        jobs = [await submit(i) for i in range(3)]
        chats = [asyncio.create_task(chat(i)) for i in range(3)]
        streams = [asyncio.create_task(stream(i)) for i in range(3)]
        await until(lambda: len(llm.arrived) >= 9)
        await asyncio.get_running_loop().run_in_executor(None, own_redis.kill_and_restart)
        for status, body in await asyncio.gather(*chats):
            assert status == 200, body
        for status, text in await asyncio.gather(*streams):
            assert status == 200 and sse_events(text)[-1][0] == "done", text

        records: dict[str, Any] = {}
        for _ in range(300):  # bounded poll of the jobs' records
            for job_id in jobs:
                async with http.get(f"{gateway.url}/api/jobs/{job_id}") as r:
                    records[job_id] = await r.json()
            if all(rec.get("status") == "done" for rec in records.values()):
                break
            await asyncio.sleep(0.1)  # allowed: polling the jobs' records
        assert all(rec.get("status") == "done" for rec in records.values()), records

    asked = [r.messages[-1]["content"] for r in llm.requests_for(spec.id)]
    expected = [f"{kind} {i}" for kind in ("chat", "stream", "job") for i in range(3)]
    assert sorted(asked) == sorted(expected)  # each question once: nothing paid twice


async def test_an_idempotent_chat_repeated_after_redis_lost_its_data_is_not_paid_again(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    own_redis: RestartableRedis,
    nats_url: str,
    uid: str,
) -> None:
    llm, url = model
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=20, redis_url=own_redis.url, rate_ip_per_min=0)
    body = {"message": "Book it, please", "session_id": f"s{uid}"}
    headers = {"Idempotency-Key": f"k{uid}"}
    async with running_agent(spec, nats_url, own_redis.url, url):
        async with http.post(f"{gateway.url}/api/chat/{spec.id}", json=body, headers=headers) as r:
            first = (r.status, await r.json())
        await asyncio.get_running_loop().run_in_executor(None, own_redis.kill_and_restart)
        async with http.post(f"{gateway.url}/api/chat/{spec.id}", json=body, headers=headers) as r:
            again = (r.status, await r.json(), r.headers.get("Idempotent-Replayed"))
    assert first[0] == 200 and again[0] == 200, (first, again)
    assert again[1]["reply"] == first[1]["reply"]
    assert len(llm.arrived) == 1, "the repeat was answered (and paid) a second time"
