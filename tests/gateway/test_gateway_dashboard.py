"""What the page reads from the gateway: its traffic per minute and agent, tenant by tenant,
the page's own files, and a stream's error in the same detail as a JSON one."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from chatbus_gateway.flow.traffic import WINDOW_MINUTES, Traffic, percentile
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import RunningGateway, StartGateway
from tests.gateway.test_gateway_auth import ADMIN, cli_env, create_key  # noqa: F401 (fixture)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_traffic_counts_per_minute_and_agent_for_one_tenant_or_all() -> None:
    clock = Clock(1_800_000_000.0)
    traffic = Traffic(clock)
    for ms in range(1, 101):  # 100 answers from 1 ms to 100 ms
        traffic.record("acme", "support", 200, ms / 1000)
    traffic.record("acme", "support", 502, 0.5)
    traffic.record("acme", "sales", 429, 0.001)
    clock.now += 60
    traffic.record("other", "support", 200, 2.0)

    acme = traffic.summary("acme")
    assert len(acme["per_minute"]) == WINDOW_MINUTES
    assert [(m["requests"], m["errors"], m["refused"]) for m in acme["per_minute"][-2:]] == [
        (102, 1, 1),
        (0, 0, 0),
    ]
    support = next(a for a in acme["agents"] if a["agent"] == "support")
    assert (support["requests"], support["errors"]) == (101, 1)
    assert support["p50_ms"] == 51.0 and support["p95_ms"] == 96.0
    everyone = traffic.summary(None)
    assert sum(m["requests"] for m in everyone["per_minute"]) == 103

    clock.now += 60 * WINDOW_MINUTES  # an hour later the old minutes are gone
    traffic.record("acme", "support", 200, 0.01)
    assert sum(m["requests"] for m in traffic.summary("acme")["per_minute"]) == 1
    assert len(traffic.buckets) == 1


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0], 0.95) == 2.0


@pytest.mark.usefixtures("cli_env")
async def test_stats_show_a_tenant_its_own_traffic_and_the_admin_all(
    start_gateway: StartGateway,
    agent: StubAgent,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gw = await start_gateway(auth="on", admin_key=ADMIN, key_cache_s=0)
    key_a, _ = await create_key(monkeypatch, capsys, "tenant-a")
    key_b, _ = await create_key(monkeypatch, capsys, "tenant-b")
    body = {"message": "hello", "session_id": "s1"}
    for key, agent_id, status in [
        (key_a, agent.agent, 200),
        (key_a, "nobody-here", 404),
        (key_b, agent.agent, 200),
    ]:
        async with http.post(
            f"{gw.url}/api/chat/{agent_id}", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as r:
            assert r.status == status, await r.text()
    openai_body = {"model": agent.agent, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(
        f"{gw.url}/v1/chat/completions",
        json=openai_body,
        headers={"Authorization": f"Bearer {key_b}"},
    ) as r:
        assert r.status == 200

    async def stats(key: str) -> dict[str, tuple[int, int]]:
        async with http.get(f"{gw.url}/api/stats", headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200
            got = await r.json()
        return {a["agent"]: (a["requests"], a["refused"]) for a in got["agents"]}

    assert await stats(key_a) == {agent.agent: (1, 0), "nobody-here": (1, 1)}
    assert await stats(key_b) == {agent.agent: (2, 0)}  # the OpenAI API counts as the agent
    assert await stats(ADMIN) == {agent.agent: (3, 0), "nobody-here": (1, 1)}
    async with http.get(f"{gw.url}/api/stats") as r:
        assert r.status == 401


async def test_the_page_and_its_files_are_served_and_nothing_else(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = gateway.url
    async with http.get(f"{url}/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        page = await r.text()
    for name, kind in [
        ("/static/app.css", "text/css"),
        ("/static/dashboard.js", "text/javascript"),
        ("/favicon.ico", "image/svg+xml"),
    ]:
        async with http.get(url + name) as r:
            assert (r.status, r.content_type) == (200, kind), name
    assert "/static/chat.js" in page
    for name in ("/static/nope.js", "/static/..%2Froutes%2Fweb.py", "/static/index.html"):
        async with http.get(url + name) as r:
            assert r.status == 404, name


async def test_a_stream_that_fails_midway_ends_with_the_json_errors_detail(
    start_gateway: StartGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(request_timeout_s=1.0)
    agent.gate = asyncio.Event()  # the agent stalls after its first chunk: the gateway times out
    url = f"{gateway.url}/api/chat/{agent.agent}"
    try:
        async with http.post(
            url,
            json={"message": "a long answer please", "session_id": "mid"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200  # the stream had begun
            text = await r.text()
    finally:
        agent.gate.set()
    events = [block.split("\n") for block in text.strip().split("\n\n")]
    assert events[0][0] == "event: chunk"
    assert events[-1][0] == "event: error"
    error = json.loads(events[-1][1].removeprefix("data: "))["error"]
    # the same fields a JSON answer carries: words, a type, the HTTP status as code
    assert error["type"] == "timeout" and error["code"] == 504
    assert "did not answer in time" in error["message"]
