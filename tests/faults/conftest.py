"""Fault tests: real NATS, Redis, agent runtime and gateway; only the model (a fake) misbehaves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from chatbus.agent.service import make_wire
from chatbus.agent.settings import AgentSettings
from chatbus.agent.spec import AgentSpec
from chatbus.runtime import Runtime
from chatbus_dev import offline_llm
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.testing import serving
from tests.gateway.conftest import callbacks, http, start_gateway

__all__ = ["callbacks", "http", "start_gateway"]


@dataclass
class TimedLLM(OfflineLLM):
    """The offline model, noting when each chat call arrived."""

    arrived: list[float] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.arrived.append(time.time())
        return await super().chat(request)


@pytest_asyncio.fixture
async def model() -> AsyncIterator[tuple[TimedLLM, str]]:
    llm = TimedLLM()
    runner, url = await offline_llm.start(llm)
    yield llm, url
    await runner.cleanup()


def spec_for(uid: str, **kw: Any) -> AgentSpec:
    return AgentSpec(
        id=f"fault{uid}",
        label="Fault",
        description="answers fault tests",
        system_prompt="You are the fault test agent.",
        **kw,
    )


@asynccontextmanager
async def running_agent(
    spec: AgentSpec, nats_url: str, redis_url: str, llm_url: str, **overrides: Any
) -> AsyncIterator[Runtime]:
    values: dict[str, Any] = {
        "service_name": f"agent-{spec.id}",
        "nats_url": nats_url,
        "redis_url": redis_url,
        "port": 0,
        "host": "127.0.0.1",
        "openai_base_url": llm_url,
        "memory_enabled": False,
        "cost_enabled": False,
        "cache_enabled": False,
        "log_format": "text",
    }
    values.update(overrides)
    async with serving(AgentSettings(**values), make_wire(spec)) as service:
        yield service.rt


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def until(check: Any, timeout: float = 20.0) -> None:
    """Poll ``check()`` until true (bounded: generous for a busy machine)."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)  # allowed: polling state another task updates


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a server-sent event stream."""
    out = []
    for block in raw.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        out.append((name, json.loads(data)))
    return out


@dataclass
class Traffic:
    """Chats, streams and async jobs sent to one gateway while a fault is injected."""

    http: aiohttp.ClientSession
    url: str
    agent: str
    uid: str

    async def chat(self, i: int) -> tuple[int, Any]:
        async with self.http.post(
            f"{self.url}/api/chat/{self.agent}",
            json={"message": f"chat {i}", "session_id": f"c{self.uid}-{i}"},
        ) as r:
            return r.status, await r.json()

    async def stream(self, i: int) -> tuple[int, str]:
        async with self.http.post(
            f"{self.url}/api/chat/{self.agent}",
            json={"message": f"stream {i}", "session_id": f"t{self.uid}-{i}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            return r.status, await r.text()

    async def submit(self, i: int) -> str:
        async with self.http.post(
            f"{self.url}/api/chat/{self.agent}?mode=async",
            json={"message": f"job {i}", "session_id": f"j{self.uid}-{i}"},
        ) as r:
            assert r.status == 202, await r.text()
            return str((await r.json())["job_id"])
