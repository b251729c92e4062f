"""An async job whose model answers slower than an attempt may take: one model call per
attempt (never two at once), parked after the last, no turn written; re-driven once the model
is quick again, it is answered and written once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.faults.conftest import TimedLLM, running_agent, spec_for
from tests.gateway.gw_harness import RunningGateway, StartGateway


async def record_when(
    http: aiohttp.ClientSession, gw: RunningGateway, job_id: str, status: str
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for _ in range(400):  # bounded poll, as a client would
        async with http.get(f"{gw.url}/api/jobs/{job_id}") as r:
            record = await r.json()
        if record.get("status") == status:
            return record
        await asyncio.sleep(0.05)  # allowed: polling the job's record
    raise AssertionError(f"job never {status}: {record}")


async def test_a_job_slower_than_its_attempts_pays_once_per_attempt_then_redrives_once(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    llm.latency_s = 2.5
    spec = spec_for(uid)
    gw = await start_gateway(
        request_timeout_s=1.0, job_max_deliver=3, job_backoff_s=(0.1,), rate_ip_per_min=0
    )
    async with running_agent(spec, nats_url, redis_url, url, llm_retries=3):
        async with http.post(
            f"{gw.url}/api/chat/{spec.id}?mode=async",
            json={"message": "a slow question", "session_id": f"s{uid}"},
        ) as r:
            assert r.status == 202, await r.text()
            job_id = (await r.json())["job_id"]
        record = await record_when(http, gw, job_id, "dead_lettered")
        assert record["attempts"] == 3 and record["error"]["code"] == 504, record
        assert len(llm.arrived) == 3  # one model call per attempt ...
        gaps = [b - a for a, b in zip(llm.arrived, llm.arrived[1:], strict=False)]
        assert all(g > 0.9 for g in gaps), gaps  # ... each after the one before gave up

        llm.latency_s = 0.0
        async with http.get(f"{gw.url}/api/admin/dead-letters?limit=1000") as r:
            parked = [p for p in (await r.json())["dead_letters"] if p["job_id"] == job_id]
        async with http.post(f"{gw.url}/api/admin/dead-letters/{parked[0]['seq']}/redrive") as r:
            assert r.status == 200, await r.text()
        record = await record_when(http, gw, job_id, "done")
        async with http.post(
            f"{gw.url}/api/chat/{spec.id}",
            json={"message": "and then?", "session_id": f"s{uid}"},
        ) as r:
            assert r.status == 200, await r.text()
    assert len(llm.arrived) == 5
    prompt = llm.requests_for(spec.id)[-1].messages
    # The abandoned attempts left nothing; the re-driven one its question and answer, once.
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"], prompt
