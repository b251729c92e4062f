"""What a bus call to another service raised, as the gateway's HTTP error answer.

The memory, profile and records routes ask their owners over the bus; these decorators turn
what comes back (nobody answering, a timeout, the owner refusing the input) into a 422, 404,
502 or 503 in the gateway's ``{"error": {message, type, code, param}}`` shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from chatbus.errors import BusUnavailable, NoResponders, RemoteError, RequestTimeout
from chatbus_gateway.api.errors import ApiError

log = logging.getLogger("chatbus.gateway")


def invalid_field(message: str, detail: list[dict[str, Any]]) -> web.Response:
    """422 in the gateway's error shape, naming the first bad field."""
    first = detail[0] if detail else {}
    param = ".".join(str(p) for p in first.get("loc", [])) or None
    text = f"{param}: {first.get('msg')}" if param and first.get("msg") else message
    return ApiError(422, text, param=param).response()


def detail_of(err: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in err.errors()
    ]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def memory_guard(handler: Handler) -> Handler:
    """Bus failures become 503 (memory down) or 422 (the service rejected the input)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return e.response()
        except ValidationError as e:
            return invalid_field("invalid request", detail_of(e))
        except (NoResponders, RequestTimeout, BusUnavailable) as e:
            log.warning("memory service unavailable: %s", e)
            return ApiError(503, "memory service unavailable", type="unavailable").response()
        except RemoteError as e:
            if e.code == "invalid":
                return invalid_field(e.message, [e.detail or {}])
            status = 503 if e.code in ("unavailable", "timeout") else 502
            kind = "unavailable" if status == 503 else "upstream_error"
            return ApiError(status, e.message, type=kind).response()

    return wrapped


def _records_unavailable(e: Exception) -> ApiError:
    log.warning("records unavailable: %s", e)
    return ApiError(503, "records are unavailable: no agent service answered", type="unavailable")


def records_guard(handler: Handler) -> Handler:
    """The owner's answers as HTTP: not_found 404, invalid 422, owner unreachable 503."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return e.response()
        except (NoResponders, RequestTimeout, BusUnavailable) as e:
            return _records_unavailable(e).response()
        except RemoteError as e:
            if e.code == "not_found":
                return ApiError(404, e.message, type="not_found").response()
            if e.code == "invalid":
                loc = (e.detail or {}).get("loc") or []
                return ApiError(422, e.message, param=".".join(map(str, loc)) or None).response()
            return _records_unavailable(e).response()

    return wrapped
