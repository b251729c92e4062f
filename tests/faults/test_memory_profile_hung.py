"""A hung memory service and a known user: the profile lookup is skipped within its budget and
the reply says it was answered without memory, as a skipped recall does."""

from __future__ import annotations

import time
import uuid

from nats.aio.msg import Msg

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.contracts.memory import GetProfile
from chatbus.deadline import after
from tests.faults.conftest import TimedLLM, running_agent, spec_for


async def test_a_profile_lookup_memory_never_answers_is_skipped_in_budget_and_flagged(
    bus: Bus, model: tuple[TimedLLM, str], nats_url: str, redis_url: str, uid: str
) -> None:
    _, url = model
    asked: list[Msg] = []

    async def hang(msg: Msg) -> None:
        asked.append(msg)  # takes the lookup and never answers (a SIGSTOPped memory)

    hung = await bus.nc.subscribe(GetProfile.subject, cb=hang)
    spec = spec_for(uid)
    try:
        async with running_agent(
            spec, nats_url, redis_url, url, memory_enabled=True, memory_recall_budget_s=0.5
        ):
            req = ChatRequest(
                request_id=uuid.uuid4().hex,
                agent=spec.id,
                session_id=f"s{uid}",  # a new session: nothing to search, only the profile
                message="hello",
                user_id=f"u{uid}",
                deadline=after(30),
            )
            started = time.monotonic()
            reply = await bus.request(req, ChatReply, ChatRequest.subject_for(spec.id), timeout=30)
            took = time.monotonic() - started
    finally:
        await hung.unsubscribe()
    assert asked, "the agent did ask memory for the user's profile"
    assert "offline model" in reply.reply
    assert took < 0.5 + 1.0, f"a hung memory cost {took:.2f}s (budget 0.5s)"
    assert reply.degraded == "memory"
