"""Domain events: sales qualifies a lead, support (two replicas) records it once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from agent_support.events import remember_qualified_lead
from chatbus.agent.events import CustomerNotes, EventContext, Subscription
from chatbus.agent.records import RecordStore
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn
from chatbus.contracts.events import DOMAIN_STREAM, LeadQualified
from chatbus.redis_link import RedisLink
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from tests.collab.collab_harness import agents, ask, call, pair, tool_messages

pytestmark = pytest.mark.timeout(60)


async def eventually(check: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)  # allowed: the event is consumed asynchronously


async def test_lead_qualified_by_sales_is_recorded_once_by_support_with_two_replicas(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, sales = pair(uid)
    tenant, user = f"t{uid}", f"u{uid}"
    handled: list[str] = []

    async def counting(event: LeadQualified, ctx: EventContext) -> None:
        if event.tenant_id == tenant:
            handled.append(event.event_id)
        await remember_qualified_lead.handler(event, ctx)

    support = replace(
        support,
        subscriptions=(Subscription(LeadQualified, counting, remember_qualified_lead.name),),
    )
    notes_key = CustomerNotes.key(tenant, user, None)
    async with agents([support, support, sales], nats_url, redis_url, url):
        llm.push(
            call("qualify_lead", company="ACME", plan="enterprise", seats=50,
                 budget_usd_per_month=5000, timeline_months=1),
            Scripted(content="You qualify for Enterprise."),
        )  # fmt: skip
        await bus.request(
            ask(sales, "We are ACME, 50 people, we want enterprise now", f"s{uid}",
                tenant_id=tenant, user_id=user),
            ChatReply,
            ChatRequest.subject_for(sales.id),
        )  # fmt: skip
        result = json.loads(tool_messages(llm.requests_for(sales.id)[-1].messages)[0])
        assert result["qualified"] is True

        async def noted() -> bool:
            return bool(await redis.hlen(notes_key))

        await eventually(noted)

        durable = f"{support.id}-remember_qualified_lead"

        async def settled() -> bool:
            info = await bus.js.consumer_info(DOMAIN_STREAM, durable)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(settled)
        consumers = [
            c.name for c in await bus.js.consumers_info(DOMAIN_STREAM)
            if c.name.startswith(support.id)
        ]  # fmt: skip
        assert consumers == [durable]  # one durable shared by both replicas
        assert len(handled) == 1

        # A later support chat of the same user, in another session, knows about the lead.
        llm.push(Scripted(content="I see you are talking to sales about Enterprise."))
        await bus.request(
            ask(support, "hello again", f"other{uid}", tenant_id=tenant, user_id=user),
            ChatReply,
            ChatRequest.subject_for(support.id),
        )
    system = llm.requests_for(support.id)[-1].system
    assert "Sales qualified ACME as a lead for the enterprise plan (50 seats" in system


async def test_only_a_qualified_lead_is_announced(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    _, sales = pair(uid)
    tenant, user = f"t{uid}", f"u{uid}"
    sub = await bus.nc.subscribe(LeadQualified.subject)
    async with agents([sales], nats_url, redis_url, url):
        llm.push(call("qualify_lead", company="Tiny", plan="starter", seats=1),
                 Scripted(content="Starter is free."))  # fmt: skip
        await bus.request(
            ask(sales, "just me", f"s{uid}", tenant_id=tenant, user_id=user),
            ChatReply,
            ChatRequest.subject_for(sales.id),
        )
        llm.push(call("qualify_lead", company="Big", plan="enterprise", seats=80,
                      timeline_months=2), Scripted(content="Great."))  # fmt: skip
        await bus.request(
            ask(sales, "we are big", f"s{uid}", tenant_id=tenant, user_id=user),
            ChatReply,
            ChatRequest.subject_for(sales.id),
        )
    # Events are in publish order: the first one seen for this tenant is the big one.
    while True:
        event = LeadQualified.from_bytes((await sub.next_msg(timeout=5)).data)
        if event.tenant_id == tenant:
            break
    assert event.company == "Big" and event.source == sales.id and event.user_id == user
    await sub.unsubscribe()


class RecordingMemory:
    def __init__(self) -> None:
        self.remembered: list[tuple[ChatRequest, list[Turn]]] = []

    async def recall(self, req: ChatRequest, *, k: int, scope: str) -> list[Turn]:
        return []

    async def profile(self, req: ChatRequest) -> dict[str, str]:
        return {}

    async def remember(self, req: ChatRequest, turns: list[Turn]) -> None:
        self.remembered.append((req, turns))


async def test_support_puts_a_qualified_lead_in_the_customers_long_term_memory(
    redis_link: RedisLink, uid: str
) -> None:
    memory = RecordingMemory()
    ctx = EventContext(
        agent="support",
        records=RecordStore(redis_link),
        notes=CustomerNotes(redis_link),
        memory=memory,
    )
    event = LeadQualified(tenant_id=f"t{uid}", user_id=f"u{uid}", session_id=f"s{uid}",
                          source="sales", lead_id="L-1", company="ACME", plan="enterprise",
                          seats=50, score=80)  # fmt: skip
    await remember_qualified_lead.handler(event, ctx)
    await remember_qualified_lead.handler(event, ctx)  # redelivered: still one note
    (req, turns), _ = memory.remembered
    assert (req.tenant_id, req.user_id) == (f"t{uid}", f"u{uid}")
    assert req.request_id == f"event-{event.event_id}"  # memory stores a redelivery once
    assert turns[0].role == "summary" and "ACME" in turns[0].content
    assert await CustomerNotes(redis_link).all(f"t{uid}", f"u{uid}", None) == [turns[0].content]
