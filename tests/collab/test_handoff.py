"""Handoffs between agents over the bus: routing, handing back, loops cut, absent targets."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from chatbus.agent.handoff import route_key
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from tests.collab.collab_harness import agents, ask, call, pair, tool_messages, tool_names

pytestmark = pytest.mark.timeout(60)


async def test_support_hands_to_sales_which_keeps_the_session_until_it_hands_back(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, sales = pair(uid)
    session = f"s{uid}"
    to_support = ChatRequest.subject_for(support.id)
    async with agents([support, sales], nats_url, redis_url, url):
        llm.push(
            call(f"transfer_to_{sales.id}", reason="wants the enterprise plan"),
            Scripted(content="Enterprise is 45 USD per seat and month."),
        )
        first = await bus.request(
            ask(support, "I'd like to buy the enterprise plan", session), ChatReply, to_support
        )
        assert (first.agent, first.handoff_from) == (sales.id, support.id)
        assert first.reply == "Enterprise is 45 USD per seat and month."
        assert await redis.get(route_key("default", session)) == sales.id.encode()
        # The support LLM was offered the transfer; sales got the customer's message.
        assert f"transfer_to_{sales.id}" in tool_names(llm.requests_for(support.id)[0].body)
        assert llm.requests_for(sales.id)[0].messages[-1]["content"].startswith("I'd like")

        llm.push(Scripted(content="50 seats would be 2250 USD per month."))
        second = await bus.request(
            ask(support, "And for 50 seats?", session), ChatReply, to_support
        )
        assert (second.agent, second.handoff_from) == (sales.id, support.id)
        assert len(llm.requests_for(support.id)) == 1  # support did not call its LLM again
        sales_prompt = llm.requests_for(sales.id)[-1].prompt_text
        assert "Enterprise is 45 USD" in sales_prompt  # sales sees the session's history

        llm.push(call(f"transfer_to_{support.id}"), Scripted(content="Let me check order 4471."))
        third = await bus.request(
            ask(support, "Actually, where is my order 4471?", session), ChatReply, to_support
        )
        assert (third.agent, third.handoff_from) == (support.id, sales.id)
        assert await redis.get(route_key("default", session)) == support.id.encode()

        llm.push(Scripted(content="Anything else?"))
        fourth = await bus.request(ask(support, "thanks", session), ChatReply, to_support)
        assert (fourth.agent, fourth.handoff_from) == (support.id, None)


async def test_handoff_loops_are_cut_by_the_per_message_limit(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    support, sales = pair(uid)
    ping_pong = [call(f"transfer_to_{sales.id}"), call(f"transfer_to_{support.id}")] * 4
    llm.push(*ping_pong)
    async with agents([support, sales], nats_url, redis_url, url):
        reply = await bus.request(
            ask(support, "who am I talking to?", f"s{uid}"),
            ChatReply,
            ChatRequest.subject_for(support.id),
        )
    # support -> sales -> support -> sales: 3 handoffs, the limit. Every further transfer is
    # refused and the LLM told so, until it answers itself (here: once the script runs out,
    # within the step limit). The customer gets an answer, not a hang or an error.
    assert reply.agent == sales.id
    assert len(llm.requests) <= 3 + 6
    refused = tool_messages(llm.requests_for(sales.id)[-1].messages)
    assert any("already handed over 3 times" in t for t in refused)


async def test_handoff_to_an_agent_with_no_running_instance_falls_back_with_a_reason(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, sales = pair(uid)
    llm.push(
        call(f"transfer_to_{sales.id}"),
        Scripted(content="Our sales team is not available right now; I can help meanwhile."),
    )
    async with agents([support], nats_url, redis_url, url):  # sales is not running
        reply = await bus.request(
            ask(support, "I want to buy", f"s{uid}"),
            ChatReply,
            ChatRequest.subject_for(support.id),
        )
    assert reply.agent == support.id and reply.handoff_from is None
    assert reply.reply.startswith("Our sales team is not available")
    told = tool_messages(llm.requests_for(support.id)[-1].messages)
    assert told and f"no {sales.id} agent is running" in told[0]
    assert await redis.get(route_key("default", f"s{uid}")) is None  # route unchanged
