"""Server-sent events: open a stream, send one event."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def open_sse(
    request: web.Request, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )
    await resp.prepare(request)
    return resp


async def send_event(resp: web.StreamResponse, data: Any, event: str | None = None) -> None:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    await resp.write(f"{head}data: {text}\n\n".encode())
