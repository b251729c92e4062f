"""Agents calling tools through the scripted fake LLM: results, bad arguments, the step limit."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from chatbus.agent.records import RecordStore
from chatbus.bus import Bus
from chatbus.offline_llm import OfflineLLM, Scripted
from tests.collab.collab_harness import agents, call, chat, pair, raw_call, tool_messages

pytestmark = pytest.mark.timeout(60)


async def test_tool_result_reaches_the_llm_and_the_customers_order_is_read(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, _ = pair(uid)
    tenant, user = f"t{uid}", f"u{uid}"
    llm.push(call("lookup_order", order_id="4471"), Scripted(content="It shipped with DHL."))
    async with agents([support], nats_url, redis_url, url, demo_data=f"{tenant}/{user}"):
        reply = await chat(bus, support, "where is order 4471?", f"s{uid}",
                           tenant_id=tenant, user_id=user)  # fmt: skip
    assert reply.reply == "It shipped with DHL." and reply.agent == support.id
    first, second = llm.requests_for(support.id)
    offered = {t["function"]["name"]: t["function"] for t in first.body["tools"]}
    assert offered["lookup_order"]["parameters"]["required"] == ["order_id"]
    assert "open_ticket" in offered and "confirm_draft" not in offered  # support drafts nothing
    asked = second.messages[-2]
    assert asked["role"] == "assistant" and asked["tool_calls"][0]["function"]["name"] == (
        "lookup_order"
    )
    result = json.loads(tool_messages(second.messages)[0])
    assert result["tracking"] == "JD014600006281" and result["status"] == "shipped"
    assert "user_id" not in result and "tenant_id" not in result  # the model sees the order only
    assert second.messages[-1]["tool_call_id"] == asked["tool_calls"][0]["id"]
    stored = await RecordStore(redis).get(tenant, "order", "4471")
    assert stored is not None and stored["user_id"] == user


async def test_invalid_tool_arguments_go_back_to_the_llm_as_a_tool_error(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, _ = pair(uid)
    llm.push(
        call("open_ticket", title=5, priority="whenever"),
        raw_call("lookup_order", "{not json"),
        call("cancel_everything"),
        call("open_ticket", title="Broken", description="x", severity="high"),
        Scripted(content="Could you describe the problem?"),
    )
    async with agents([support], nats_url, redis_url, url):
        reply = await chat(bus, support, "my thing is broken", f"s{uid}", tenant_id=f"t{uid}")
    assert reply.reply == "Could you describe the problem?"
    errors = tool_messages(llm.requests_for(support.id)[-1].messages)
    assert len(errors) == 4
    assert "invalid arguments for open_ticket" in errors[0]
    assert "title" in errors[0] and "description" in errors[0] and "priority" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "no tool named 'cancel_everything'" in errors[2] and "lookup_order" in errors[2]
    assert "does not take severity" in errors[3]  # undeclared arguments do not slip through
    assert await RecordStore(redis).list(f"t{uid}", "ticket") == []


async def test_past_the_step_limit_the_agent_says_it_could_not_finish(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    support, _ = pair(uid)
    llm.push(*[call("lookup_order", order_id="4472")] * 5)
    async with agents([support], nats_url, redis_url, url, max_tool_steps=3):
        reply = await chat(bus, support, "check it again and again", f"s{uid}")
    assert reply.degraded == "tool_steps"
    assert "could not finish" in reply.reply
    assert len(llm.requests_for(support.id)) == 3
    llm.script.clear()
