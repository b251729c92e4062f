"""Send a chat message to an agent over the bus: one reply, or a stream of chunks then a reply.

The message's deadline is set here, once: ``REQUEST_TIMEOUT_S`` from now, or the async job's
own deadline when the job worker already set one. The agent works within it, and beats while it
works: when an instance dies mid-request (no reply, no beat for a few seconds) the request is
sent again, to another instance -- model calls the dead one completed are reused, not repaid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus.deadline import after, remaining
from chatbus.errors import BusUnavailable, InstanceLost, NoResponders, RequestTimeout
from chatbus_gateway.api.errors import ApiError, from_bus_error

log = logging.getLogger("chatbus.gateway.dispatch")

# When each agent last answered this gateway. "No responders" for an agent that answered in
# the last ANSWERED_LATELY_S means its instances are gone for a moment (their NATS node died
# and they are reconnecting, or they restart): asked again for up to RECONNECT_WAIT_S, then
# 503. Only for an agent never seen (or long gone) is it a 404 (unknown agent).
_answered: dict[str, float] = {}
ANSWERED_LATELY_S = 600.0
RECONNECT_WAIT_S = 1.5

# Agent ids become NATS subject tokens: no dots, wildcards or spaces.
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_agent_id(agent: str) -> str:
    if not AGENT_ID.match(agent):
        raise ApiError(404, f"unknown agent {agent[:80]!r}", type="not_found", param="agent")
    return agent


def _check_bus(bus: Bus) -> None:
    if not bus.connected:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")


def with_deadline(req: ChatRequest, timeout: float) -> ChatRequest:
    """``req`` with its deadline: ``timeout`` from now unless it already has one (a job's)."""
    if req.deadline is not None:
        return req
    return req.model_copy(update={"deadline": after(timeout)})


async def ask(bus: Bus, req: ChatRequest, timeout: float) -> ChatReply:
    """The agent's reply to ``req``; bus failures become :class:`ApiError`.

    An instance that dies while it works is noticed in seconds and the request sent again
    (same request id) until the deadline; no instance left answers 503 at once.
    """
    _check_bus(bus)
    req = with_deadline(req, timeout)
    assert req.deadline is not None
    subject = ChatRequest.subject_for(req.agent)
    lost = 0
    pause, waited = 0.1, 0.0
    while True:
        try:
            reply = await bus.request_watched(req, ChatReply, subject, deadline=req.deadline)
            _answered[req.agent] = time.monotonic()
            return reply
        except InstanceLost as e:
            lost += 1
            log.warning(
                "agent %s instance stopped working on %s; sending it again (%d)",
                req.agent,
                req.request_id,
                lost,
            )
            if remaining(req.deadline) <= 0:
                raise from_bus_error(RequestTimeout(subject), req.agent) from e
        except NoResponders as e:
            known = _answered_lately(req.agent)
            if known and not lost and waited < RECONNECT_WAIT_S < remaining(req.deadline):
                # Its instances are reconnecting (a NATS node died) or restarting: ask again.
                await asyncio.sleep(pause)  # allowed: pacing while instances come back
                waited, pause = waited + pause, pause * 2
                continue
            if lost or known:
                raise ApiError(
                    503, f"no instance of agent {req.agent!r} is running", type="unavailable"
                ) from e
            raise from_bus_error(e, req.agent) from e
        except Exception as e:
            raise from_bus_error(e, req.agent) from e


def _answered_lately(agent: str) -> bool:
    at = _answered.get(agent)
    return at is not None and time.monotonic() - at < ANSWERED_LATELY_S


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
    chunks: deque[bytes] = deque()
    arrived = asyncio.Event()

    def on_chunk(data: bytes) -> None:
        chunks.append(data)
        arrived.set()

    async with contextlib.AsyncExitStack() as listening:
        try:  # chunks can only follow the request this connection sends next: no flush
            inbox = await listening.enter_async_context(bus.listen(on_chunk, flush=False))
        except Exception as e:
            raise from_bus_error(BusUnavailable(str(e)), req.agent) from e
        streamed = _stream(bus, req, timeout, inbox, chunks, arrived)
        async with contextlib.aclosing(streamed):  # a client gone: its request stops now
            async for item in streamed:
                yield item


async def _stream(
    bus: Bus,
    req: ChatRequest,
    timeout: float,
    inbox: str,
    chunks: deque[bytes],
    arrived: asyncio.Event,
) -> AsyncGenerator[ChatChunk | ChatReply, None]:
    req = with_deadline(req, timeout).model_copy(update={"stream_inbox": inbox})
    assert req.deadline is not None
    deadline = req.deadline

    def send() -> asyncio.Future[ChatReply]:
        subject = ChatRequest.subject_for(req.agent)
        return asyncio.ensure_future(
            bus.request_watched(req, ChatReply, subject, deadline=deadline)
        )

    reply_task = send()
    waiter: asyncio.Future[Any] | None = None
    started = False  # once text is out, a lost instance ends the stream: no second start
    # Chunks are numbered: one lost on the way (NATS restarted mid-answer) holds back the
    # rest, and the reply fills in what the user has not seen, so no words go missing.
    next_index, held, shown = 0, False, []
    try:
        while True:
            while chunks:
                if (chunk := _chunk(chunks.popleft())) is None:
                    continue
                if chunk.index >= 0:
                    held = held or chunk.index != next_index
                    if held:
                        continue
                    next_index += 1
                    shown.append(chunk.delta)
                started = True
                yield chunk
            if reply_task.done():
                if _lost(reply_task) and not started and remaining(deadline) > 0:
                    log.warning("agent instance lost before streaming %s: resent", req.request_id)
                    reply_task = send()
                    continue
                break
            arrived.clear()
            waiter = asyncio.ensure_future(arrived.wait())
            await asyncio.wait({reply_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        try:
            reply = reply_task.result()
        except InstanceLost as e:
            raise ApiError(
                503, "the agent stopped while answering; please ask again", type="unavailable"
            ) from e
        except Exception as e:
            raise from_bus_error(e, req.agent) from e
        if held and (rest := _rest(reply.reply, "".join(shown))):
            yield ChatChunk(request_id=reply.request_id, index=next_index, delta=rest)
        yield reply
    finally:
        if waiter is not None:
            waiter.cancel()
        if not reply_task.done():
            reply_task.cancel()


def _rest(reply: str, shown: str) -> str:
    """What of ``reply`` follows what was streamed (all of it streamed, or it differs: "")."""
    if not reply.startswith(shown):
        log.warning("a streamed answer lost chunks on the way; the reply carries all of it")
        return ""
    return reply[len(shown) :]


def _lost(task: asyncio.Future[ChatReply]) -> bool:
    return not task.cancelled() and isinstance(task.exception(), InstanceLost)


def _chunk(data: bytes) -> ChatChunk | None:
    try:
        return ChatChunk.from_bytes(data)
    except ValueError:
        return None
