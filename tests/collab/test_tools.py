"""Agents calling tools through the scripted fake LLM: results, bad arguments, the step limit."""

from __future__ import annotations

import json

import pytest

from chatbus_dev.offline_llm import Scripted
from tests.collab.collab_harness import Crew, call, raw_call, tool_messages

pytestmark = pytest.mark.timeout(60)


async def test_tool_result_reaches_the_llm_and_the_customers_order_is_read(crew: Crew) -> None:
    llm, support = crew.llm, crew.support
    tenant, user = f"t{crew.uid}", f"u{crew.uid}"
    llm.push(call("lookup_order", order_id="4471"), Scripted(content="It shipped with DHL."))
    async with crew.running(support, demo_data=f"{tenant}/{user}"):
        reply = await crew.chat(support, "where is order 4471?", f"s{crew.uid}",
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
    stored = await crew.records.get(tenant, "order", "4471")
    assert stored is not None and stored["user_id"] == user


async def test_invalid_tool_arguments_go_back_to_the_llm_as_a_tool_error(crew: Crew) -> None:
    llm, support, uid = crew.llm, crew.support, crew.uid
    llm.push(
        call("open_ticket", title=5, priority="whenever"),
        raw_call("lookup_order", "{not json"),
        call("cancel_everything"),
        call("open_ticket", title="Broken", description="x", severity="high"),
        Scripted(content="Could you describe the problem?"),
    )
    async with crew.running(support):
        reply = await crew.chat(support, "my thing is broken", f"s{uid}", tenant_id=f"t{uid}")
    assert reply.reply == "Could you describe the problem?"
    errors = crew.results(support)
    assert len(errors) == 4
    assert "invalid arguments for open_ticket" in errors[0]
    assert "title" in errors[0] and "description" in errors[0] and "priority" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "no tool named 'cancel_everything'" in errors[2] and "lookup_order" in errors[2]
    assert "does not take severity" in errors[3]  # undeclared arguments do not slip through
    assert await crew.records.list(f"t{uid}", "ticket") == []


async def test_past_the_step_limit_the_agent_says_it_could_not_finish(crew: Crew) -> None:
    llm, support = crew.llm, crew.support
    llm.push(*[call("lookup_order", order_id="4472")] * 5)
    async with crew.running(support, max_tool_steps=3):
        reply = await crew.chat(support, "check it again and again", f"s{crew.uid}")
    assert reply.degraded == "tool_steps"
    assert "could not finish" in reply.reply
    assert len(llm.requests_for(support.id)) == 3
    llm.script.clear()
