"""A request delivered again after it was answered (its reply lost on the way back, a job's
worker killed before it noted the answer): the answer is given again, paid and written once."""

from __future__ import annotations

import uuid

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.deadline import after
from tests.faults.conftest import TimedLLM, running_agent, spec_for


async def test_a_request_answered_once_and_delivered_again_writes_its_turns_once(
    bus: Bus, model: tuple[TimedLLM, str], nats_url: str, redis_url: str, uid: str
) -> None:
    llm, url = model
    spec = spec_for(uid)
    subject = ChatRequest.subject_for(spec.id)
    request = ChatRequest(
        request_id=uuid.uuid4().hex,
        agent=spec.id,
        session_id=f"s{uid}",
        message="What are your opening hours?",
        deadline=after(20),
    )
    async with running_agent(spec, nats_url, redis_url, url):
        first = await bus.request(request, ChatReply, subject, deadline=request.deadline)
        again = await bus.request(request, ChatReply, subject, deadline=request.deadline)
        follow = request.model_copy(
            update={"request_id": uuid.uuid4().hex, "message": "And on Sundays?"}
        )
        await bus.request(follow, ChatReply, subject, deadline=follow.deadline)
    assert again.reply == first.reply  # the same answer, not a second one
    assert len(llm.arrived) == 2  # the question once, the follow-up once
    prompt = llm.requests_for(spec.id)[-1].messages
    # The follow-up sees the first exchange once: system, question, answer, follow-up.
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"], prompt
