"""What happens to every chat message between parsing and the agent's answer.

Limits (429) -> idempotency (replay, or wait for a duplicate in flight) -> the session's turn
(one message at a time per session) -> the agent over the bus -> tokens counted.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aiohttp import web

from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus_gateway.deps import GatewayDeps
from chatbus_gateway.flow.dispatch import ask, ask_stream
from chatbus_gateway.flow.idempotency import Idempotency, check_key, fingerprint
from chatbus_gateway.flow.limits_http import HttpLimits
from chatbus_gateway.flow.ratelimit import Limit
from chatbus_gateway.flow.session_order import SessionOrder, Ticket


class ChatPipeline:
    def __init__(
        self, deps: GatewayDeps, limits: HttpLimits, order: SessionOrder, idem: Idempotency
    ) -> None:
        self.deps = deps
        self.limits = limits
        self.order = order
        self.idem = idem
        self.timeout = deps.settings.request_timeout_s
        # How long a message may wait for the earlier messages of its session.
        self.turn_wait_s = deps.settings.request_timeout_s + deps.settings.session_turn_timeout_s

    async def admit(
        self, request: web.Request, req: ChatRequest, take_turn: bool = False
    ) -> Ticket | None:
        """Check the limits (429); with ``take_turn``, take the session's turn too."""
        s = self.deps.settings
        limiter = self.limits.limiter
        extra = [
            limiter.limit("session", f"{req.tenant_id}:{req.session_id}", s.rate_session_per_min)
        ]
        if req.user_id:
            extra.append(
                limiter.limit("user", f"{req.tenant_id}:{req.user_id}", s.rate_user_per_min)
            )
        turn = (self.order, req.tenant_id, req.session_id) if take_turn else None
        return await self.limits.check(request, extra, tokens=True, turn=turn)

    async def reply(self, request: web.Request, req: ChatRequest) -> tuple[ChatReply, bool]:
        """The agent's reply, and whether it is a replay of an earlier identical request."""
        key = request.headers.get("Idempotency-Key")
        tokens = self.limits.tokens_limit(request)
        if key is None:  # the common case: limits and the session's turn in one round trip
            ticket = await self.admit(request, req, take_turn=True)
            return await self.answer(req, tokens, ticket), False
        check_key(key)  # 422 before the limits count it; claimed only once admitted
        await self.admit(request, req)
        fp = fingerprint(request.path, req.agent, req.session_id, req.message, req.user_id or "")
        return await self.idem.run(req.tenant_id, key, fp, lambda: self.answer(req, tokens))

    async def answer(
        self, req: ChatRequest, tokens: Limit | None = None, ticket: Ticket | None = None
    ) -> ChatReply:
        """Ask the agent in the session's turn (also used by the job worker, whose request
        already carries its attempt's deadline)."""
        ticket = ticket or await self.order.take(req.tenant_id, req.session_id)
        async with self.order.hold(ticket, self.turn_wait_s):
            reply = await ask(self.deps.bus, req, self.timeout)
        await self._spend(tokens, reply)
        return reply

    async def stream(
        self, request: web.Request, req: ChatRequest
    ) -> AsyncGenerator[ChatChunk | ChatReply, None]:
        """Chunks as the agent writes them, then its reply.

        With an ``Idempotency-Key``, a repeat gets the stored reply as one chunk (and
        ``request[REPLAYED]`` is set), with no second model call.
        """
        key = request.headers.get("Idempotency-Key")
        if key is None:
            ticket = await self.admit(request, req, take_turn=True)
            assert ticket is not None
            async for item in self._stream(request, req, ticket):
                yield item
            return
        check_key(key)
        await self.admit(request, req)
        fp = fingerprint(request.path, req.agent, req.session_id, req.message, req.user_id or "")
        claim = await self.idem.begin(req.tenant_id, key, fp)
        if isinstance(claim, ChatReply):
            request[REPLAYED] = True
            yield ChatChunk(
                request_id=claim.request_id, index=0, delta=claim.reply, agent=claim.agent
            )
            yield claim
            return
        stored = False
        try:
            ticket = await self.order.take(req.tenant_id, req.session_id)
            async for item in self._stream(request, req, ticket):
                if isinstance(item, ChatReply):
                    await self.idem.finish(claim, item)
                    stored = True
                yield item
        finally:
            if not stored:
                await self.idem.abandon(claim)

    async def _stream(
        self, request: web.Request, req: ChatRequest, ticket: Ticket
    ) -> AsyncGenerator[ChatChunk | ChatReply, None]:
        tokens = self.limits.tokens_limit(request)
        async with self.order.hold(ticket, self.turn_wait_s):
            async for item in ask_stream(self.deps.bus, req, self.timeout):
                if isinstance(item, ChatReply):
                    await self._spend(tokens, item)
                yield item

    async def _spend(self, tokens: Limit | None, reply: ChatReply) -> None:
        # Awaited, so the caller's next request already sees these tokens.
        if tokens is not None:
            await self.limits.limiter.spend_tokens(tokens, reply.usage.total_tokens)


PIPELINE = web.AppKey("chatbus_gateway_pipeline", ChatPipeline)
# Set on a request whose answer is the stored reply of an earlier one (Idempotency-Key).
REPLAYED = web.RequestKey("chatbus_gateway_replayed", bool)
