"""Send a chat message to an agent over the bus: one reply, or a stream of chunks then a reply."""

from __future__ import annotations

import asyncio
import contextlib
import re
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

    The chunk inbox is subscribed before the request is sent, so no chunk is missed. Chunks
    published before the reply are already queued when the reply arrives (same connection,
    in order), so the tail is drained without waiting.
    """
    _check_bus(bus)
    try:
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox)
    except Exception as e:
        raise from_bus_error(BusUnavailable(str(e)), req.agent) from e
    req = req.model_copy(update={"stream_inbox": inbox})
    reply_task = asyncio.ensure_future(
        bus.request(req, ChatReply, ChatRequest.subject_for(req.agent), timeout=timeout)
    )
    next_chunk: asyncio.Future[Msg] | None = None
    try:
        while not reply_task.done():
            if next_chunk is None:
                next_chunk = asyncio.ensure_future(sub.next_msg(timeout=None))
            waiting: set[asyncio.Future[Any]] = {reply_task, next_chunk}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if next_chunk.done():
                chunk = _chunk(next_chunk.result())
                next_chunk = None
                if chunk is not None:
                    yield chunk
        if next_chunk is not None and next_chunk.done():
            chunk = _chunk(next_chunk.result())
            next_chunk = None
            if chunk is not None:
                yield chunk
        while sub.pending_msgs > 0:
            chunk = _chunk(await sub.next_msg(timeout=1))
            if chunk is not None:
                yield chunk
        try:
            reply = reply_task.result()
        except Exception as e:
            raise from_bus_error(e, req.agent) from e
        yield reply
    finally:
        if next_chunk is not None:
            next_chunk.cancel()
        if not reply_task.done():
            reply_task.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _chunk(msg: Msg) -> ChatChunk | None:
    try:
        return ChatChunk.from_bytes(msg.data)
    except ValueError:
        return None
