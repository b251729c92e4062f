"""What happens to every chat message between parsing and the agent's answer.

Limits (429) -> the message gets its deadline -> the session's turn (one message at a time per
session, waited for until the deadline) -> ``Idempotency-Key`` (inside the turn, so a repeat
finds its first run finished and replays it: nothing to wait for) -> the agent over the bus ->
tokens counted.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial

from aiohttp import web

from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus_gateway.deps import GatewayDeps
from chatbus_gateway.flow.dispatch import ask, ask_stream, with_deadline
from chatbus_gateway.flow.idempotency import Idempotency, check_key, fingerprint
from chatbus_gateway.flow.limits_http import HttpLimits
from chatbus_gateway.flow.order import SessionOrder
from chatbus_gateway.flow.ratelimit import Limit


class ChatPipeline:
    def __init__(
        self, deps: GatewayDeps, limits: HttpLimits, order: SessionOrder, idem: Idempotency
    ) -> None:
        self.deps = deps
        self.limits = limits
        self.order = order
        self.idem = idem
        self.timeout = deps.settings.request_timeout_s

    async def admit(self, request: web.Request, req: ChatRequest) -> None:
        """Count the message against the caller's, user's and session's limits (else 429)."""
        if self.limits.off:
            return
        s = self.deps.settings
        limiter = self.limits.limiter
        extra = [
            limiter.limit("session", f"{req.tenant_id}:{req.session_id}", s.rate_session_per_min)
        ]
        if req.user_id:
            extra.append(
                limiter.limit("user", f"{req.tenant_id}:{req.user_id}", s.rate_user_per_min)
            )
        await self.limits.check(request, extra, tokens=True)

    async def reply(self, request: web.Request, req: ChatRequest) -> tuple[ChatReply, bool]:
        """The agent's reply, and whether it is a replay of an earlier identical request."""
        key = _idempotency_key(request)  # 422 before the limits count it
        await self.admit(request, req)
        req = with_deadline(req, self.timeout)
        async with self.order.turn(req.tenant_id, req.session_id, req.deadline):
            if key is None:
                reply, replayed = await ask(self.deps.bus, req, self.timeout), False
            else:
                fp = _fingerprint(request, req)
                work = partial(ask, self.deps.bus, req, self.timeout)
                reply, replayed = await self.idem.run(req.tenant_id, key, fp, work)
        if not replayed:
            await self._spend(self.limits.tokens_limit(request), reply)
        return reply, replayed

    async def answer(self, req: ChatRequest) -> ChatReply:
        """The agent's reply in the session's turn, for the job worker (whose request already
        carries its attempt's deadline)."""
        req = with_deadline(req, self.timeout)
        async with self.order.turn(req.tenant_id, req.session_id, req.deadline):
            return await ask(self.deps.bus, req, self.timeout)

    async def stream(
        self, request: web.Request, req: ChatRequest
    ) -> AsyncGenerator[ChatChunk | ChatReply, None]:
        """Chunks as the agent writes them, then its reply.

        With an ``Idempotency-Key``, a repeat gets the stored reply as one chunk (and
        ``request[REPLAYED]`` is set), with no second model call.
        """
        key = _idempotency_key(request)
        await self.admit(request, req)
        req = with_deadline(req, self.timeout)
        tokens = self.limits.tokens_limit(request)
        async with self.order.turn(req.tenant_id, req.session_id, req.deadline):
            if key is None:
                async for item in ask_stream(self.deps.bus, req, self.timeout):
                    if isinstance(item, ChatReply):
                        await self._spend(tokens, item)
                    yield item
                return
            claim = await self.idem.begin(req.tenant_id, key, _fingerprint(request, req))
            if isinstance(claim, ChatReply):
                request[REPLAYED] = True
                yield ChatChunk(
                    request_id=claim.request_id, index=0, delta=claim.reply, agent=claim.agent
                )
                yield claim
                return
            stored = False
            try:
                async for item in ask_stream(self.deps.bus, req, self.timeout):
                    if isinstance(item, ChatReply):
                        await self.idem.finish(claim, item)
                        stored = True
                        await self._spend(tokens, item)
                    yield item
            finally:
                if not stored:
                    await self.idem.abandon(claim)

    async def _spend(self, tokens: Limit | None, reply: ChatReply) -> None:
        # Awaited, so the caller's next request already sees these tokens.
        if tokens is not None:
            await self.limits.limiter.spend_tokens(tokens, reply.usage.total_tokens)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    return None if key is None else check_key(key)


def _fingerprint(request: web.Request, req: ChatRequest) -> str:
    return fingerprint(request.path, req.agent, req.session_id, req.message, req.user_id or "")


PIPELINE = web.AppKey("chatbus_gateway_pipeline", ChatPipeline)
# Set on a request whose answer is the stored reply of an earlier one (Idempotency-Key).
REPLAYED = web.RequestKey("chatbus_gateway_replayed", bool)
