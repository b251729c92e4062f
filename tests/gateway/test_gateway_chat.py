"""The native chat API: replies, agent discovery, and every known failure as a clear answer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from chatbus_dev.nats_server import start_nats
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import RunningGateway, StartGateway


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, **kw) as r:
        return r.status, await r.json()


async def test_chat_returns_the_agents_reply_with_usage(
    gateway: RunningGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    status, body = await post(
        http,
        f"{gateway.url}/api/chat/{agent.agent}",
        {"message": "Where is my order?", "session_id": "s1", "user_id": "u1"},
    )
    assert status == 200, body
    assert "Where is my order?" in body["reply"]
    assert body["agent"] == agent.agent
    assert body["session_id"] == "s1"
    assert body["request_id"]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert agent.seen[0].user_id == "u1" and agent.seen[0].tenant_id == "default"


async def test_agents_lists_what_runs_on_the_bus(
    gateway: RunningGateway, agent: StubAgent, bus: Any, fake_llm: Any, http: aiohttp.ClientSession
) -> None:
    second = await StubAgent(bus, agent.agent, fake_llm[1], label="Support").start()
    async with http.get(f"{gateway.url}/api/agents") as r:
        assert r.status == 200
        listed = {a["id"]: a for a in (await r.json())["agents"]}
    await second.close()
    mine = listed[agent.agent]
    assert mine["instances"] == 2
    assert mine["label"] == "Support" and mine["description"]


async def test_unknown_agent_is_404_at_once(
    gateway: RunningGateway, http: aiohttp.ClientSession, uid: str
) -> None:
    started = time.monotonic()
    status, body = await post(
        http, f"{gateway.url}/api/chat/nobody-{uid}", {"message": "hi", "session_id": "s"}
    )
    assert status == 404
    assert "nobody" in body["error"]["message"]
    assert time.monotonic() - started < 1.0
    status, _ = await post(
        http, f"{gateway.url}/api/chat/a.b*", {"message": "hi", "session_id": "s"}
    )
    assert status == 404


async def test_bad_input_names_the_field(
    gateway: RunningGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/api/chat/{agent.agent}"
    cases: list[tuple[Any, int, str]] = [
        ({"session_id": "s"}, 422, "message"),
        ({"message": "", "session_id": "s"}, 422, "message"),
        ({"message": "   ", "session_id": "s"}, 422, "message"),
        ({"message": 12, "session_id": "s"}, 422, "message"),
        ({"message": "hi"}, 422, "session_id"),
        ({"message": "hi", "session_id": ["s"]}, 422, "session_id"),
        ({"message": "hi", "session_id": "s", "user_id": 5}, 422, "user_id"),
        (["not", "an", "object"], 400, "body"),
    ]
    for body, want, field in cases:
        status, answer = await post(http, url, body)
        assert (status, answer["error"]["param"]) == (want, field), body
    async with http.post(url, data=b"{not json") as r:
        assert r.status == 400
        assert "JSON" in (await r.json())["error"]["message"]
    async with http.post(url, data=b"") as r:
        assert r.status == 400
    assert agent.seen == []


async def test_size_limits(
    start_gateway: StartGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(max_message_chars=100)
    url = f"{gateway.url}/api/chat/{agent.agent}"
    status, body = await post(http, url, {"message": "x" * 70_000, "session_id": "s"})
    assert status == 413 and body["error"]["type"] == "request_too_large"
    status, body = await post(http, url, {"message": "x" * 101, "session_id": "s"})
    assert status == 422 and body["error"]["param"] == "message"
    assert "100" in body["error"]["message"]


async def test_llm_failure_is_502_and_silence_is_504(
    start_gateway: StartGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
) -> None:
    llm, _ = fake_llm
    gateway = await start_gateway(request_timeout_s=0.5)
    url = f"{gateway.url}/api/chat/{agent.agent}"
    llm.fail_next(500)
    status, body = await post(http, url, {"message": "hi", "session_id": "s"})
    assert status == 502
    assert "language model" in body["error"]["message"]
    llm.push(Scripted(content="late", delay_s=2.0))
    status, body = await post(http, url, {"message": "hi", "session_id": "s2"})
    assert status == 504
    assert "did not answer in time" in body["error"]["message"]


async def test_bus_down_is_503(
    start_gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    nats = start_nats(tmp_path / "nats")
    gateway = await start_gateway(nats_url=nats.url)
    nats.stop()
    status, body = await post(
        http, f"{gateway.url}/api/chat/support", {"message": "hi", "session_id": "s"}
    )
    assert status == 503 and body["error"]["type"] == "unavailable"
    async with http.get(f"{gateway.url}/api/agents") as r:
        assert r.status == 503
    async with http.get(f"{gateway.url}/ready") as r:
        assert r.status == 503


async def test_every_route_served_is_in_openapi_json_and_every_operation_there_is_served(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as r:
        spec = await r.json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in gateway.rt.http.router.routes()
        if route.resource is not None and route.method != "HEAD"  # HEAD: with every GET
    }
    assert served == documented
    assert ("GET", "/api/users/{id}/profile") in served and ("GET", "/metrics") in served


async def test_probes_metrics_and_openapi(
    gateway: RunningGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/health") as r:
        assert r.status == 200
    async with http.get(f"{gateway.url}/ready") as r:
        assert r.status == 200, await r.text()
    await post(http, f"{gateway.url}/api/chat/{agent.agent}", {"message": "hi", "session_id": "s"})
    async with http.get(f"{gateway.url}/metrics") as r:
        text = await r.text()
    assert 'chatbus_http_responses_total{route="/api/chat/{agent_id}",status="200"}' in text
    async with http.get(f"{gateway.url}/openapi.json") as r:
        spec = await r.json()
    for path in ("/api/chat/{agent_id}", "/api/agents", "/v1/chat/completions", "/health"):
        assert path in spec["paths"]
    assert "ChatIn" in spec["components"]["schemas"]
    async with http.get(f"{gateway.url}/nope") as r:
        assert r.status == 404 and "error" in await r.json()
    async with http.get(f"{gateway.url}/api/chat/x") as r:
        assert r.status == 405 and "error" in await r.json()
