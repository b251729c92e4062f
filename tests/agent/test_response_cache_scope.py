"""The response cache never serves an answer given by another model, provider, prompt or tools."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest_asyncio
from pydantic import BaseModel

from chatbus.agent.service import make_wire
from chatbus.agent.settings import AgentSettings
from chatbus.agent.spec import AgentSpec
from chatbus.agent.tools import ToolContext, tool
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus_dev import offline_llm
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.testing import serving


class NoArgs(BaseModel):
    pass


@tool
async def opening_hours(args: NoArgs, ctx: ToolContext) -> str:
    """The shop's opening hours."""
    return "9 to 5"


@pytest_asyncio.fixture
async def other_llm() -> AsyncIterator[tuple[OfflineLLM, str]]:
    llm = OfflineLLM()
    runner, url = await offline_llm.start(llm)
    yield llm, url
    await runner.cleanup()


@asynccontextmanager
async def running_agent(
    spec: AgentSpec, nats_url: str, redis_url: str, llm_url: str, model: str | None = None
) -> AsyncIterator[None]:
    """The agent service with its response cache on (memory and costs off)."""
    settings = AgentSettings(
        service_name=f"agent-{spec.id}",
        nats_url=nats_url,
        redis_url=redis_url,
        port=0,
        host="127.0.0.1",
        openai_base_url=llm_url,
        model=model,
        memory_enabled=False,
        cost_enabled=False,
        cache_enabled=True,
        log_format="text",
    )
    async with serving(settings, make_wire(spec)):
        yield


async def ask(bus: Bus, spec: AgentSpec, message: str = "Hello!") -> ChatReply:
    # A new session each time: the prompt is the same, only the cache can make them equal.
    req = ChatRequest(
        request_id=uuid.uuid4().hex,
        agent=spec.id,
        session_id=f"s-{uuid.uuid4().hex[:8]}",
        message=message,
    )
    return await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id))


async def test_same_setup_hits_and_any_change_of_provider_model_prompt_or_tools_misses(
    bus: Bus,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    other_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    (a, a_url), (b, b_url) = fake_llm, other_llm
    spec = AgentSpec(
        id=f"cached{uid}", label="Cached", description="t", system_prompt="You are terse."
    )
    a.push(Scripted(content="Hi from A"))
    async with running_agent(spec, nats_url, redis_url, a_url):
        first, again = await ask(bus, spec), await ask(bus, spec)
    assert (first.reply, first.cached) == ("Hi from A", False)
    assert (again.reply, again.cached) == ("Hi from A", True)
    assert len(a.requests_for(spec.id)) == 1

    # Another provider (base URL), same model name: asked anew.
    b.push(Scripted(content="Hi from B"))
    async with running_agent(spec, nats_url, redis_url, b_url):
        other = await ask(bus, spec)
    assert (other.reply, other.cached) == ("Hi from B", False)

    # Back on A, another model: asked anew.
    a.push(Scripted(content="Hi from A's bigger model"))
    async with running_agent(spec, nats_url, redis_url, a_url, model="gpt-4o"):
        bigger = await ask(bus, spec)
    assert (bigger.reply, bigger.cached) == ("Hi from A's bigger model", False)

    # Same id, another system prompt: asked anew.
    a.push(Scripted(content="Hi, politely"))
    polite = replace(spec, system_prompt="You are very polite.")
    async with running_agent(polite, nats_url, redis_url, a_url):
        reply = await ask(bus, polite)
    assert (reply.reply, reply.cached) == ("Hi, politely", False)

    # Same prompt, a new tool: asked anew.
    a.push(Scripted(content="Hi, with tools"))
    tooled = replace(spec, tools=(opening_hours,))
    async with running_agent(tooled, nats_url, redis_url, a_url):
        reply = await ask(bus, tooled)
    assert (reply.reply, reply.cached) == ("Hi, with tools", False)

    # The original setup still finds its own entry.
    async with running_agent(spec, nats_url, redis_url, a_url):
        back = await ask(bus, spec)
    assert (back.reply, back.cached) == ("Hi from A", True)
