"""Streamed answers under faults: a model that stalls mid-answer, a user who leaves mid-answer.
Either way the user (if still there) gets a clear end, and nothing is written to the history."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest_asyncio
from aiohttp import web

from tests.faults.conftest import running_agent, spec_for, sse_events, until
from tests.gateway.gw_harness import StartGateway


class SlowModel:
    """Streams its answer a word at a time, ``pause_s`` apart; ``stall_after`` words, then
    says nothing more (the connection stays open). Notes each call and whether it finished."""

    def __init__(self, pause_s: float = 0.3, stall_after: int | None = None) -> None:
        self.pause_s, self.stall_after = pause_s, stall_after
        self.calls: list[dict[str, object]] = []
        self.closed_early = 0  # calls whose caller went away before the answer ended
        self.release = asyncio.Event()  # ends a stall (at the test's end)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append(body)
        words = ["Hello", " there,", " this", " is", " a", " slow", " answer", " indeed."]
        if not body.get("stream"):
            await asyncio.sleep(self.pause_s * len(words))  # allowed: the model's latency
            return web.json_response(_completion(body, "".join(words)))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, word in enumerate(words):
                if self.stall_after is not None and i == self.stall_after:
                    await self.release.wait()  # stalls mid-answer, connection open
                await resp.write(_chunk(body, {"content": word}))
                await asyncio.sleep(self.pause_s)  # allowed: the model's pace
            await resp.write(_chunk(body, {}, "stop"))
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.closed_early += 1
            raise
        return resp


def _chunk(body: dict[str, object], delta: dict[str, str], finish: str | None = None) -> bytes:
    data = {
        "model": body["model"],
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def _completion(body: dict[str, object], text: str) -> dict[str, object]:
    return {
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13},
    }


@asynccontextmanager
async def serve_model(model: SlowModel) -> AsyncIterator[str]:
    """``model`` over real HTTP for the block: its base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        model.release.set()
        await runner.cleanup()


@pytest_asyncio.fixture
async def slow_model() -> AsyncIterator[tuple[SlowModel, str]]:
    model = SlowModel()
    async with serve_model(model) as url:
        yield model, url


def history_roles(model: SlowModel) -> list[str]:
    """The roles of the last prompt the model got (what the session's history held then)."""
    messages = model.calls[-1]["messages"]
    assert isinstance(messages, list)
    return [m["role"] for m in messages]


async def test_a_model_stalling_mid_stream_ends_the_stream_with_a_timeout_in_time(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    slow_model: tuple[SlowModel, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    model, url = slow_model
    model.pause_s, model.stall_after = 0.05, 2
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=2.0)
    async with running_agent(spec, nats_url, redis_url, url, llm_retries=3):
        started = time.monotonic()
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Say hello", "session_id": f"s{uid}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            events = sse_events(await r.text())
        took = time.monotonic() - started
        model.stall_after = None
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Hello again", "session_id": f"s{uid}"},
        ) as r:
            assert r.status == 200, await r.text()
    assert "".join(d["delta"] for n, d in events if n == "chunk") == "Hello there,"
    assert events[-1][0] == "error", events
    assert events[-1][1]["error"]["code"] in (503, 504)
    assert took < 2.0 + 1.5, f"a stalled stream held the user {took:.1f}s (deadline 2s)"
    assert len(model.calls) == 2  # the stalled call was not retried once text was out
    assert history_roles(model) == ["system", "user"]  # the broken answer left no turn


async def test_a_user_leaving_mid_stream_stops_the_model_call_and_leaves_no_turn(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    slow_model: tuple[SlowModel, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    model, url = slow_model
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=20)
    async with running_agent(spec, nats_url, redis_url, url):
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Say hello", "session_id": f"s{uid}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            async for line in r.content:
                if line.startswith(b"event: chunk"):
                    break  # the first words arrived: the user closes the page
        await until(lambda: model.closed_early == 1, timeout=10)  # the model call was stopped
        model.pause_s = 0.0
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Hello again", "session_id": f"s{uid}"},
        ) as r:
            assert r.status == 200, await r.text()
    assert len(model.calls) == 2
    assert history_roles(model) == ["system", "user"]


async def test_a_model_slower_than_the_deadline_gives_a_streaming_user_a_timely_504(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    slow_model: tuple[SlowModel, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    model, url = slow_model
    model.stall_after = 0  # nothing at all comes
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=1.5)
    async with running_agent(spec, nats_url, redis_url, url, llm_timeout_s=60, llm_retries=5):
        started = time.monotonic()
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Say hello", "session_id": f"s{uid}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            status, body = r.status, await r.json()
        took = time.monotonic() - started
        model.stall_after = None
        model.pause_s = 0.0
        async with http.post(
            f"{gateway.url}/api/chat/{spec.id}",
            json={"message": "Hello again", "session_id": f"s{uid}"},
        ) as r:
            assert r.status == 200, await r.text()
    # Nothing was streamed before the deadline: a plain JSON 504 in the documented shape.
    assert status == 504 and body["error"]["type"] == "timeout", body
    assert took < 1.5 + 1.0, f"the user waited {took:.1f}s for a 1.5s deadline"
    assert len(model.calls) == 2  # no retry past the deadline
    assert history_roles(model) == ["system", "user"]
