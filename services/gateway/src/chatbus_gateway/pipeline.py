"""What happens to every chat message between parsing and the agent's answer."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aiohttp import web
from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest

from chatbus_gateway.deps import GatewayDeps
from chatbus_gateway.dispatch import ask, ask_stream


class ChatPipeline:
    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps

    async def reply(self, request: web.Request, req: ChatRequest) -> ChatReply:
        return await ask(self.deps.bus, req, self.deps.settings.request_timeout_s)

    async def stream(
        self, request: web.Request, req: ChatRequest
    ) -> AsyncGenerator[ChatChunk | ChatReply, None]:
        async for item in ask_stream(self.deps.bus, req, self.deps.settings.request_timeout_s):
            yield item


PIPELINE = web.AppKey("chatbus_gateway_pipeline", ChatPipeline)
