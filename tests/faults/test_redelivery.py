"""A redelivered request reuses the model calls an earlier attempt completed: paid once."""

from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel

from chatbus.agent.tools import ToolContext, tool
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.deadline import after
from chatbus.errors import RemoteError, RequestTimeout
from chatbus_dev.offline_llm import Scripted
from tests.faults.conftest import TimedLLM, running_agent, sample, spec_for, until


class Item(BaseModel):
    item: str


async def test_a_redelivered_request_does_not_call_the_model_again_for_a_finished_step(
    bus: Bus, model: tuple[TimedLLM, str], nats_url: str, redis_url: str, uid: str
) -> None:
    llm, url = model
    looked_up: list[str] = []

    @tool
    async def check_stock(args: Item, ctx: ToolContext) -> str:
        """How many of an item are in stock."""
        looked_up.append(args.item)
        return "3 in stock"

    spec = spec_for(uid, tools=(check_stock,))
    request = ChatRequest(
        request_id=uuid.uuid4().hex,
        agent=spec.id,
        session_id=f"s{uid}",
        message="Do you have lamps?",
        deadline=after(1.5),
    )
    subject = ChatRequest.subject_for(spec.id)
    llm.push(
        Scripted(tool_calls=[{"name": "check_stock", "arguments": {"item": "lamp"}}]),
        Scripted(content="too late", delay_s=3.0),  # step 1 outlives the first attempt
        Scripted(content="We have 3 lamps."),
    )
    async with running_agent(spec, nats_url, redis_url, url) as rt:
        with pytest.raises((RemoteError, RequestTimeout)):
            await bus.request(request, ChatReply, subject, deadline=request.deadline)

        def gave_up() -> bool:
            return any(
                sample(rt.registry, "chatbus_messages_total", agent=spec.id, outcome=o) > 0
                for o in ("timeout", "abandoned")
            )

        await until(gave_up)
        assert len(llm.arrived) == 2

        # JetStream (or the gateway) delivers the same request again, with time to finish.
        again = request.model_copy(update={"deadline": after(10)})
        reply = await bus.request(again, ChatReply, subject, deadline=again.deadline)
        reused = sample(rt.registry, "chatbus_llm_calls_reused_total", agent=spec.id)

    assert reply.reply == "We have 3 lamps."
    # Step 0 (the tool call) came from the first attempt: 2 + 1 calls, not 2 + 2.
    assert len(llm.arrived) == 3
    assert reused == 1
    last = llm.requests_for(spec.id)[-1].messages
    assert any(m["role"] == "tool" and m["content"] == "3 in stock" for m in last)
