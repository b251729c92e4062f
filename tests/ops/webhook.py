"""A Slack-compatible webhook receiver on 127.0.0.1 and a clock tests can move."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WEBHOOK_TOKEN = "T0K3N-in-the-webhook-path"


class Clock:
    """Injectable monotonic clock: tests move ``now`` instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    """Records every ``{"text": ...}`` it receives; answers with ``status``."""

    url: str = ""
    texts: list[str] = field(default_factory=list)
    arrived: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        assert set(body) == {"text"}, body
        self.texts.append(body["text"])
        self.arrived.put_nowait(body["text"])
        return web.Response(status=self.status, text="ok")

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post(f"/services/{WEBHOOK_TOKEN}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/services/{WEBHOOK_TOKEN}"
        return runner
