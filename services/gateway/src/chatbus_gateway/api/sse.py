"""Server-sent events: open a stream, send one event, send the error that ends a stream."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from chatbus_gateway.api.errors import ApiError

log = logging.getLogger("chatbus.gateway")


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


async def send_error(resp: web.StreamResponse, exc: Exception) -> None:
    """An ``error`` event with the body a JSON answer would have had:
    ``{"error": {"message", "type", "code", "param"}}`` (``code`` is the HTTP status)."""
    if not isinstance(exc, ApiError):
        log.error("stream failed after its first chunk", exc_info=exc)
        exc = ApiError(502, "the gateway could not complete the request", type="gateway_error")
    await send_event(resp, exc.body(), "error")
