"""Streaming over the bus: every chunk an agent sent before its reply reaches the client."""

from __future__ import annotations

import asyncio

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus_gateway.flow.dispatch import ask_stream


async def test_no_chunk_is_lost_when_the_reply_follows_at_once(bus: Bus, uid: str) -> None:
    """An agent that replies right after its last chunk: the tail must not be dropped."""
    agent = f"burst-{uid}"
    words = [f"w{i} " for i in range(12)]

    async def answer(req: ChatRequest) -> ChatReply:
        assert req.stream_inbox
        for i, word in enumerate(words):
            chunk = ChatChunk(request_id=req.request_id, index=i, delta=word, agent=agent)
            await bus.publish(chunk, req.stream_inbox)
        return ChatReply(
            request_id=req.request_id, agent=agent, session_id=req.session_id, reply="".join(words)
        )

    await bus.subscribe(ChatRequest.subject_for(agent), ChatRequest, answer, queue=agent)

    async def one(n: int) -> str:
        req = ChatRequest(request_id=f"r{n}", agent=agent, session_id=f"s{n}", message="go")
        deltas = []
        async for item in ask_stream(bus, req, timeout=10):
            if isinstance(item, ChatChunk):
                deltas.append(item.delta)
            else:
                assert item.reply == "".join(words)
        return "".join(deltas)

    for _ in range(40):  # many streams at once, several rounds: the race has room to show
        got = await asyncio.gather(*(one(n) for n in range(30)))
        assert got == ["".join(words)] * 30
