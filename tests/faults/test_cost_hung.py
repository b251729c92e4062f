"""A hung cost service: the spend check gives up within its share of the deadline and fails
open (the chat is answered), and the usage of the answer is recorded once on the COST stream."""

from __future__ import annotations

import json
import time
import uuid

from nats.aio.msg import Msg

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.contracts.cost import AuthorizeSpend, UsageRecorded
from chatbus.cost_client import ensure_cost_stream
from chatbus.deadline import after
from tests.faults.conftest import TimedLLM, running_agent, spec_for


async def test_a_hung_cost_service_costs_a_chat_its_share_and_usage_counts_once(
    bus: Bus, model: tuple[TimedLLM, str], nats_url: str, redis_url: str, uid: str
) -> None:
    llm, url = model
    asked: list[Msg] = []

    async def hang(msg: Msg) -> None:
        asked.append(msg)  # takes the check and never answers (a SIGSTOPped cost service)

    await ensure_cost_stream(bus)  # usage events go there (this test also hears them)
    hung = await bus.nc.subscribe(AuthorizeSpend.subject, cb=hang)
    usage: list[dict[str, object]] = []

    async def note(msg: Msg) -> None:
        usage.append(json.loads(msg.data))

    watch = await bus.nc.subscribe(UsageRecorded.subject, cb=note)
    spec = spec_for(uid)
    req = ChatRequest(
        request_id=uuid.uuid4().hex,
        agent=spec.id,
        session_id=f"s{uid}",
        message="hello",
        deadline=after(10),
    )
    try:
        async with running_agent(spec, nats_url, redis_url, url, cost_enabled=True):
            started = time.monotonic()
            reply = await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id), timeout=10)
            took = time.monotonic() - started
            again = await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id), timeout=10)
            await bus.nc.flush()
    finally:
        await hung.unsubscribe()
        await watch.unsubscribe()
    assert asked, "the agent did ask the cost service"
    assert "offline model" in reply.reply and again.reply == reply.reply
    assert took < 10 * 0.1 + 0.8, f"a hung cost service cost {took:.2f}s (10% of 10s)"
    assert len(llm.arrived) == 1
    mine = [u for u in usage if u["request_id"] == req.request_id]
    assert len(mine) == 1, mine  # counted once, also when the request came again
