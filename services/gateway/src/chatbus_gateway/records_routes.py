"""What agents' tools did, readable through the API: tickets, leads, invoices, orders.

``GET /api/{kind}?session_id=&user_id=&limit=`` lists a tenant's records newest first (filtered
by session or user); ``GET /api/{kind}/{id}`` reads one. The records are the ones agent tools
write with :class:`chatbus.agent.tools.RecordStore`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatbus.agent.tools import RecordStore
from chatbus_gateway.caller import tenant_of
from chatbus_gateway.errors import error_body

KINDS = {"tickets": "ticket", "leads": "lead", "invoices": "invoice", "orders": "order"}
MAX_LIMIT = 200


def _tenant(request: web.Request) -> str:
    return tenant_of(request)


def _bad(message: str, param: str) -> web.Response:
    return web.json_response(error_body(message, "invalid_request_error", 422, param), status=422)


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return None
    return int(raw)


def setup_records_routes(app: web.Application, redis: Any) -> None:
    """Add ``GET /api/{tickets,leads,invoices,orders}`` (list) and ``.../{id}`` (one)."""
    store = RecordStore(redis)

    def lister(plural: str, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            limit = _limit(request)
            if limit is None:
                return _bad(f"limit: must be an integer from 1 to {MAX_LIMIT}", "limit")
            records = await store.list(
                _tenant(request),
                kind,
                session_id=request.query.get("session_id") or None,
                user_id=request.query.get("user_id") or None,
                limit=limit,
            )
            return web.json_response({plural: records})

        return handler

    def reader(kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            record = await store.get(_tenant(request), kind, request.match_info["record_id"])
            if record is None:
                body = error_body(
                    f"no {kind} {request.match_info['record_id'][:80]!r}", "not_found", 404
                )
                return web.json_response(body, status=404)
            return web.json_response(record)

        return handler

    for plural, kind in KINDS.items():
        app.router.add_get(f"/api/{plural}", lister(plural, kind))
        app.router.add_get(f"/api/{plural}/{{record_id}}", reader(kind))
