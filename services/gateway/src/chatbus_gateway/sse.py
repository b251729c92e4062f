"""Server-sent events: open a stream, send one event."""

from __future__ import annotations

from typing import Any

import orjson
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
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    head = f"event: {event}\n" if event else ""
    await resp.write(b"".join((head.encode(), b"data: ", payload, b"\n\n")))
