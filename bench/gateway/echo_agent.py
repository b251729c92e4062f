"""An agent that answers at once, without a model: measures the gateway's own cost.

    NATS_URL=nats://127.0.0.1:4222 ./dev run python bench/gateway/echo_agent.py support

Answers ``ChatRequest`` on ``chat.request.v1.<agent>`` (queue group ``<agent>``) with a
``ChatReply`` echoing the message, streams it word by word when asked, answers ``AgentPing``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid

from chatbus.bus import Bus
from chatbus.contracts.chat import AgentInfo, AgentPing, ChatChunk, ChatReply, ChatRequest, Usage


async def main(agent: str) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bus = await Bus.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), service="echo")
    instance = uuid.uuid4().hex[:8]

    async def answer(req: ChatRequest) -> ChatReply:
        text = f"echo: {req.message}"
        if req.stream_inbox:
            for i, word in enumerate(text.split(" ")):
                chunk = ChatChunk(request_id=req.request_id, index=i, delta=word + " ", agent=agent)
                await bus.publish(chunk, req.stream_inbox)
        return ChatReply(
            request_id=req.request_id,
            agent=agent,
            session_id=req.session_id,
            reply=text,
            model="echo",
            usage=Usage(prompt_tokens=len(req.message) // 4 + 1, completion_tokens=3),
        )

    async def introduce(ping: AgentPing) -> AgentInfo:
        return AgentInfo(id=agent, label=agent.title(), instance_id=instance, model="echo")

    await bus.subscribe(ChatRequest.subject_for(agent), ChatRequest, answer, queue=agent)
    await bus.subscribe(AgentPing.subject, AgentPing, introduce)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"echo agent {agent} ready", flush=True)
    await stop.wait()
    await bus.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "support"))
