"""Agents run in-process on the test's real NATS and Redis, with ids unique to the test.

Loaded as a pytest plugin (``tests/conftest.py``): the ``crew`` fixture bundles what a tool
test needs — the real support and sales agents, the fake model, the bus and the records.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from agent_sales.persona import SALES
from agent_support.persona import SUPPORT
from chatbus.agent.records import RecordStore
from chatbus.agent.service import make_wire
from chatbus.agent.settings import AgentSettings
from chatbus.agent.spec import AgentSpec
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.redis_link import RedisLink
from chatbus.runtime import Runtime
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.testing import serving


def pair(uid: str) -> tuple[AgentSpec, AgentSpec]:
    """The real support and sales agents (tools, subscriptions), under test-unique ids."""
    support = replace(SUPPORT, id=f"support{uid}", handoffs=(f"sales{uid}",))
    sales = replace(SALES, id=f"sales{uid}", handoffs=(f"support{uid}",))
    return support, sales


def call(name: str, **arguments: Any) -> Scripted:
    """The fake LLM answers with one tool call."""
    return Scripted(tool_calls=[{"name": name, "arguments": arguments}])


def raw_call(name: str, arguments: str) -> Scripted:
    return Scripted(tool_calls=[{"name": name, "arguments": arguments}])


def ask(spec: AgentSpec, message: str, session: str, **kw: Any) -> ChatRequest:
    return ChatRequest(
        request_id=uuid.uuid4().hex, agent=spec.id, session_id=session, message=message, **kw
    )


async def chat(bus: Bus, spec: AgentSpec, message: str, session: str, **kw: Any) -> ChatReply:
    """One turn, over the bus, as the gateway sends it."""
    req = ask(spec, message, session, **kw)
    return await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id), timeout=20)


def tool_messages(body_messages: list[dict[str, Any]]) -> list[str]:
    return [str(m["content"]) for m in body_messages if m.get("role") == "tool"]


def tool_names(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools") or []}


def record(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


@asynccontextmanager
async def running(
    spec: AgentSpec, nats_url: str, redis_url: str, llm_url: str, **overrides: Any
) -> AsyncIterator[Runtime]:
    settings = AgentSettings(
        service_name=f"agent-{spec.id}",
        nats_url=nats_url,
        redis_url=redis_url,
        port=0,
        host="127.0.0.1",
        openai_base_url=llm_url,
        openai_api_key="test",
        memory_enabled=False,
        cost_enabled=False,
        cache_enabled=False,
        log_format="text",
        **overrides,
    )
    async with serving(settings, make_wire(spec)) as service:
        yield service.rt


@asynccontextmanager
async def agents(
    specs: list[AgentSpec], nats_url: str, redis_url: str, llm_url: str, **overrides: Any
) -> AsyncIterator[list[Runtime]]:
    """Several agents (or replicas: the same spec twice) at once."""
    async with AsyncExitStack() as stack:
        rts = [
            await stack.enter_async_context(running(s, nats_url, redis_url, llm_url, **overrides))
            for s in specs
        ]
        yield rts


@dataclass
class Crew:
    """The real support and sales agents (test-unique ids), the fake model, bus and records."""

    bus: Bus
    records: RecordStore
    nats_url: str
    redis_url: str
    llm: OfflineLLM
    llm_url: str
    uid: str

    def __post_init__(self) -> None:
        self.support, self.sales = pair(self.uid)

    def running(self, *specs: AgentSpec, **overrides: Any) -> Any:
        """``async with crew.running(crew.sales, MONEY_...=...)``: the agents serve meanwhile."""
        return agents(list(specs), self.nats_url, self.redis_url, self.llm_url, **overrides)

    async def chat(self, spec: AgentSpec, message: str, session: str, **kw: Any) -> ChatReply:
        return await chat(self.bus, spec, message, session, **kw)

    def results(self, spec: AgentSpec) -> list[str]:
        """The tool results the agent's latest model call was sent (this turn's)."""
        return tool_messages(self.llm.requests_for(spec.id)[-1].messages)


@pytest.fixture
async def crew(
    bus: Bus,
    redis_link: RedisLink,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> Crew:
    llm, url = fake_llm
    return Crew(bus, RecordStore(redis_link), nats_url, redis_url, llm, url, uid)
