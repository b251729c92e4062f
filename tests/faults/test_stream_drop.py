"""A model connection cut mid-stream: the user sees the start once, then a clear error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from aiohttp import web

from tests.faults.conftest import running_agent, spec_for, sse_events
from tests.gateway.gw_harness import StartGateway


class CuttingModel:
    """Streams two words of its answer, then drops the connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delta in (
            {"role": "assistant", "content": ""},
            {"content": "Hello"},
            {"content": " there"},
        ):
            chunk = {"model": body["model"], "choices": [{"index": 0, "delta": delta}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        assert request.transport is not None
        request.transport.close()  # the connection breaks mid-answer
        return resp


@pytest_asyncio.fixture
async def cutting_model() -> AsyncIterator[tuple[CuttingModel, str]]:
    model = CuttingModel()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield model, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def test_a_stream_cut_mid_answer_is_not_retried_and_ends_with_an_error_event(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    cutting_model: tuple[CuttingModel, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    model, url = cutting_model
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=10)
    overrides = {"llm_retries": 2, "fallback_model": "backup-model"}
    async with running_agent(spec, nats_url, redis_url, url, **overrides):
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Say hello", "session_id": f"s{uid}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            events = sse_events(await r.text())
    text = "".join(data["delta"] for name, data in events if name == "chunk")
    assert text == "Hello there"  # the start of the answer, exactly once
    assert [name for name, _ in events][-1] == "error"
    error = events[-1][1]["error"]
    assert error["code"] == 503 and "broke off" in error["message"]
    assert model.calls == 1  # no retry, no fallback once text was out
