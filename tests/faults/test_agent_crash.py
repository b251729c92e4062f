"""An agent instance killed mid-request: its in-flight requests finish on the other instance in
seconds, not after the gateway's 30 s timeout."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from chatbus_dev.testing import ServiceFactory, ServiceProcess
from tests.faults.conftest import TimedLLM, sse_events, until
from tests.gateway.gw_harness import StartGateway

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def start_agents(
    factory: ServiceFactory, agent: str, model_url: str, count: int
) -> list[ServiceProcess]:
    """``count`` instances of a bare agent (no memory, cost or cache) on the fake model."""
    env = {
        "FAULT_AGENT_ID": agent,
        "OPENAI_BASE_URL": model_url,
        "MEMORY_ENABLED": "false",
        "COST_ENABLED": "false",
        "CACHE_ENABLED": "false",
    }
    starts = [factory.start("tests.faults.fault_agent", **env) for _ in range(count)]
    return list(await asyncio.gather(*starts))


async def test_requests_in_flight_on_a_killed_instance_complete_on_the_other_one(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    service_factory: ServiceFactory,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 2.0  # every answer takes 2 s: requests are in flight when the kill comes
    agent = f"crash{uid}"
    doomed, survivor = await start_agents(service_factory, agent, url, 2)
    gateway = await start_gateway(request_timeout_s=30)

    async def chat(i: int) -> tuple[int, dict[str, object]]:
        async with http.post(
            f"{gateway.url}/api/chat/{agent}",
            json={"message": f"question {i}", "session_id": f"s{uid}-{i}"},
        ) as r:
            return r.status, await r.json()

    n = 12
    calls = [asyncio.create_task(chat(i)) for i in range(n)]
    await until(lambda: len(llm.arrived) >= n)  # all of them are with the model now
    doomed.kill()  # kill -9, mid-request
    killed_at = time.monotonic()
    results = await asyncio.gather(*calls)
    recovered_in = time.monotonic() - killed_at

    assert [status for status, _ in results] == [200] * n, results
    assert all(f"question {i}" in str(body["reply"]) for i, (_, body) in enumerate(results))
    # The killed instance's requests were asked again on the survivor (its calls never ended)
    assert len(llm.arrived) > n
    assert recovered_in < 12, f"in-flight requests took {recovered_in:.1f}s after the kill"
    assert survivor.proc is not None and survivor.proc.poll() is None


async def test_streams_waiting_on_a_killed_instance_are_answered_once_by_the_other(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    service_factory: ServiceFactory,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 2.0  # nothing is streamed before the model answers
    agent = f"stream{uid}"
    doomed, _ = await start_agents(service_factory, agent, url, 2)
    gateway = await start_gateway(request_timeout_s=30)

    async def stream(i: int) -> str:
        async with http.post(
            f"{gateway.url}/api/chat/{agent}",
            json={"message": f"stream {i}", "session_id": f"s{uid}-{i}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            return await r.text()

    n = 10
    streams = [asyncio.create_task(stream(i)) for i in range(n)]
    await until(lambda: len(llm.arrived) >= n)
    doomed.kill()
    bodies = await asyncio.gather(*streams)
    for i, body in enumerate(bodies):
        events = sse_events(body)
        assert [name for name, _ in events][-1] == "done", body
        streamed = "".join(data["delta"] for name, data in events if name == "chunk")
        assert streamed == events[-1][1]["reply"]  # the whole answer, exactly once
        assert f"stream {i}" in streamed
    assert len(llm.arrived) > n  # some were resent to the survivor


async def test_the_last_instance_dying_mid_request_answers_503_in_seconds(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    service_factory: ServiceFactory,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 5.0
    agent = f"last{uid}"
    (only,) = await start_agents(service_factory, agent, url, 1)
    gateway = await start_gateway(request_timeout_s=30)
    call = asyncio.create_task(
        http.post(f"{gateway.url}/api/chat/{agent}", json={"message": "hi", "session_id": uid})
    )
    await until(lambda: len(llm.arrived) >= 1)
    only.kill()
    killed_at = time.monotonic()
    async with await call as r:
        status, body = r.status, await r.json()
    assert status == 503 and "no instance" in body["error"]["message"]
    assert time.monotonic() - killed_at < 10  # not the 30 s timeout
