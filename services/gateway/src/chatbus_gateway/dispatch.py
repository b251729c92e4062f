"""Send a chat message to an agent over the bus: one reply, or a stream of chunks then a reply."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from nats.aio.msg import Msg

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus.errors import BusUnavailable
from chatbus_gateway.errors import ApiError, from_bus_error

# Agent ids become NATS subject tokens: no dots, wildcards or spaces.
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_agent_id(agent: str) -> str:
    if not AGENT_ID.match(agent):
        raise ApiError(404, f"unknown agent {agent[:80]!r}", type="not_found", param="agent")
    return agent


def _check_bus(bus: Bus) -> None:
    if not bus.connected:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")


async def ask(bus: Bus, req: ChatRequest, timeout: float) -> ChatReply:
    """The agent's reply to ``req``; bus failures become :class:`ApiError`."""
    _check_bus(bus)
    try:
        return await bus.request(
            req, ChatReply, ChatRequest.subject_for(req.agent), timeout=timeout
        )
    except Exception as e:
        raise from_bus_error(e, req.agent) from e


async def ask_stream(
    bus: Bus, req: ChatRequest, timeout: float
) -> AsyncGenerator[ChatChunk | ChatReply, None]:
    """Chunks as the agent publishes them, then its final reply.

    The chunk inbox is subscribed before the request is sent, so no chunk is missed. Its
    callback only queues each chunk: the agent publishes its chunks before its reply on one
    connection, so every chunk is queued here before the reply can wake us, and none is left
    behind when the reply comes (no consuming waiter is ever cancelled holding a chunk).
    """
    _check_bus(bus)
    chunks: deque[Msg] = deque()
    arrived = asyncio.Event()

    async def on_chunk(msg: Msg) -> None:
        chunks.append(msg)
        arrived.set()

    try:
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox, cb=on_chunk)
    except Exception as e:
        raise from_bus_error(BusUnavailable(str(e)), req.agent) from e
    req = req.model_copy(update={"stream_inbox": inbox})
    reply_task = asyncio.ensure_future(
        bus.request(req, ChatReply, ChatRequest.subject_for(req.agent), timeout=timeout)
    )
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            while chunks:
                if (chunk := _chunk(chunks.popleft())) is not None:
                    yield chunk
            if reply_task.done():
                break
            arrived.clear()
            waiter = asyncio.ensure_future(arrived.wait())
            await asyncio.wait({reply_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        try:
            reply = reply_task.result()
        except Exception as e:
            raise from_bus_error(e, req.agent) from e
        yield reply
    finally:
        if waiter is not None:
            waiter.cancel()
        if not reply_task.done():
            reply_task.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _chunk(msg: Msg) -> ChatChunk | None:
    try:
        return ChatChunk.from_bytes(msg.data)
    except ValueError:
        return None
