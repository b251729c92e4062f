"""BusMemory and the gateway routes when the memory service is not running."""

from __future__ import annotations

import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.memory import MEMORY_STREAM
from chatbus.errors import RecallSkipped
from chatbus.memory_client import BusMemory
from chatbus_gateway.routes.memory import setup_memory_routes


def _req() -> ChatRequest:
    return ChatRequest(request_id="r1", agent="a", session_id="s", message="hello")


async def test_recall_without_memory_service_is_skipped(bus: Bus) -> None:
    with pytest.raises(RecallSkipped):
        await BusMemory(bus, timeout=1).recall(_req(), k=5, scope="session")


async def test_gateway_answers_503_without_memory_service(bus: Bus) -> None:
    app = web.Application()
    setup_memory_routes(app, BusMemory(bus, timeout=1))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/api/sessions/s/messages")
        assert r.status == 503
        assert (await r.json())["error"]
        r = await client.post("/api/memory/search", json={"session_id": "s", "query": "q"})
        assert r.status == 503


async def test_remember_is_durable_and_deduplicated_without_the_service(bus: Bus) -> None:
    memory = BusMemory(bus, timeout=2)
    req = _req().model_copy(update={"request_id": uuid.uuid4().hex})
    turns = [Turn(role="user", content="hello"), Turn(role="assistant", content="hi")]
    before = (await bus.js.stream_info(MEMORY_STREAM)).state.messages if await _has(bus) else 0
    await memory.remember(req, turns)
    await memory.remember(req, turns)  # a retry of the same request
    after = (await bus.js.stream_info(MEMORY_STREAM)).state.messages
    assert after - before == 1  # both turns in one event, and the retry stored nothing


async def _has(bus: Bus) -> bool:
    try:
        await bus.js.stream_info(MEMORY_STREAM)
    except Exception:
        return False
    return True
