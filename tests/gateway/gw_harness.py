"""What gateway tests share besides fixtures: the handle on an in-process gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from chatbus.runtime import Runtime


@dataclass
class RunningGateway:
    url: str
    rt: Runtime
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


StartGateway = Callable[..., Awaitable[RunningGateway]]


class Callbacks:
    """A web hook receiver: every job callback POSTed to it, in arrival order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Queue[dict[str, Any]]()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        self.arrived.put_nowait(body)
        return web.json_response({"ok": True})

    async def next(self, timeout: float = 20) -> dict[str, Any]:
        return await asyncio.wait_for(self.arrived.get(), timeout)
