"""A hung memory service costs a chat a small share of its deadline, and the reply says so."""

from __future__ import annotations

import time
import uuid

from nats.aio.msg import Msg

from chatbus.agent.history import RedisHistory
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.contracts.memory import SearchMemory
from chatbus.deadline import after
from chatbus.redis_link import RedisLink
from tests.faults.conftest import TimedLLM, running_agent, sample, spec_for


async def test_a_hung_memory_service_is_skipped_within_its_budget_and_flagged(
    bus: Bus, model: tuple[TimedLLM, str], nats_url: str, redis_url: str, uid: str
) -> None:
    _, url = model
    heard: list[Msg] = []

    async def hang(msg: Msg) -> None:
        heard.append(msg)  # takes the search and never answers

    hung = await bus.nc.subscribe(SearchMemory.subject, cb=hang)
    spec = spec_for(uid, memory_scope="user")  # a known user's other sessions are searched
    link = RedisLink(redis_url)
    try:  # the user has an imported past (as memory's TurnsImported event tells the agents)
        await RedisHistory(link, remembered_ttl_s=3600).note_imported(
            "default", f"old{uid}", f"u{uid}", 4
        )
    finally:
        await link.close()
    try:
        async with running_agent(
            spec, nats_url, redis_url, url, memory_enabled=True, memory_recall_budget_s=0.5
        ) as rt:
            req = ChatRequest(
                request_id=uuid.uuid4().hex,
                agent=spec.id,
                session_id=f"s{uid}",
                message="hello",
                user_id=f"u{uid}",
                deadline=after(30),
            )
            started = time.monotonic()
            reply = await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id), timeout=30)
            took = time.monotonic() - started
            skipped = sample(rt.registry, "chatbus_memory_recall_skipped_total", agent=spec.id)
    finally:
        await hung.unsubscribe()
    assert heard, "the agent did ask memory"
    assert reply.degraded == "memory" and "offline model" in reply.reply
    assert took < 0.5 + 1.0, f"a hung memory cost {took:.2f}s (budget 0.5s)"
    assert skipped == 1
