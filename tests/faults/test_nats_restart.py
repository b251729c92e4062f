"""The (single) NATS server killed and restarted while chats, streams and async jobs are with
the model: every one is answered once, and each question reaches the model once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import ServerProcess, free_port
from tests.faults.conftest import TimedLLM, Traffic, running_agent, spec_for, sse_events, until
from tests.faults.test_stream_faults import SlowModel, serve_model
from tests.gateway.gw_harness import StartGateway


class RestartableNats:
    def __init__(self, store: Path) -> None:
        self.store, self.port = store, free_port()
        self.server: ServerProcess = start_nats(store, port=self.port)
        self.url = self.server.url

    def kill_and_restart(self) -> None:
        self.server.proc.kill()  # kill -9: no goodbye to its clients
        self.server.proc.wait()
        self.server = start_nats(self.store, port=self.port)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[RestartableNats]:
    nats = RestartableNats(tmp_path / "nats")
    yield nats
    nats.server.stop()


async def test_a_nats_restart_with_work_in_flight_answers_everything_once(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    own_nats: RestartableNats,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 2.0  # everything is with the model when NATS dies
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=20, nats_url=own_nats.url, rate_ip_per_min=0)

    traffic = Traffic(http, gateway.url, spec.id, uid)
    chat, stream, submit = traffic.chat, traffic.stream, traffic.submit

    async with running_agent(spec, own_nats.url, redis_url, url):
        jobs = [await submit(i) for i in range(3)]
        chats = [asyncio.create_task(chat(i)) for i in range(3)]
        streams = [asyncio.create_task(stream(i)) for i in range(3)]
        await until(lambda: len(llm.arrived) >= 9)
        await asyncio.get_running_loop().run_in_executor(None, own_nats.kill_and_restart)
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


async def test_a_nats_restart_mid_stream_loses_no_words_of_the_answers(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    own_nats: RestartableNats,
    redis_url: str,
    uid: str,
) -> None:
    model = SlowModel(pause_s=0.2)
    seen = [0]  # chunk events received, over all streams

    async def stream(url: str, i: int) -> list[tuple[str, dict[str, Any]]]:
        raw = b""
        async with http.post(
            url,
            json={"message": f"Say hello {i}", "session_id": f"s{uid}-{i}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            async for line in r.content:
                raw += line
                seen[0] += line.startswith(b"event: chunk")
        return sse_events(raw.decode())

    async with serve_model(model) as url:
        spec = spec_for(uid)
        gateway = await start_gateway(
            request_timeout_s=20, nats_url=own_nats.url, rate_ip_per_min=0
        )
        async with running_agent(spec, own_nats.url, redis_url, url):
            chat_url = f"{gateway.url}/api/chat/{spec.id}"
            streams = [asyncio.create_task(stream(chat_url, i)) for i in range(4)]
            await until(lambda: seen[0] >= 8)  # two words of each are out: NATS dies
            await asyncio.get_running_loop().run_in_executor(None, own_nats.kill_and_restart)
            results = await asyncio.gather(*streams)
    for events in results:
        streamed = "".join(d["delta"] for n, d in events if n == "chunk")
        last, data = events[-1]
        assert last == "done", events
        assert streamed == data["reply"], (streamed, data["reply"])  # every word, once
    assert len(model.calls) == 4
