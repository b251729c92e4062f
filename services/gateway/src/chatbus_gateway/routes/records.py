"""What agents' tools did, readable through the API: tickets, leads, invoices, orders.

``GET /api/{kind}?session_id=&user_id=&limit=&cursor=`` lists the caller's tenant's records
newest first (one session's or one user's when asked), a page at a time: ``next_cursor`` in the
answer is the ``cursor`` of the next page (``null`` on the last). ``GET /api/{kind}/{id}`` reads
one (``?user_id=`` / ``?session_id=``: only if it is theirs).

The records belong to the agent runtime: these routes ask the agent services over the bus
(``records.query.v1`` / ``records.get.v1``) and never read their keys.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, create_model

from chatbus.contracts.records import MAX_PAGE, QueryRecords
from chatbus.records_client import BusRecords
from chatbus_gateway.api.bus_errors import Handler, records_guard
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import ID, Answer, Route, add_routes, int_query, path, query
from chatbus_gateway.api.store_schemas import RecordOut
from chatbus_gateway.auth.caller import tenant_of

KINDS = {"tickets": "ticket", "leads": "lead", "invoices": "invoice", "orders": "order"}
MAX_LIMIT = MAX_PAGE
MAX_ID = 200


LIMIT = int_query("limit", 1, MAX_LIMIT)
SESSION_ID, USER_ID, CURSOR = query("session_id", ID), query("user_id", ID), query("cursor", ID)


def setup_records_routes(app: web.Application, records: BusRecords) -> None:
    """Add ``GET /api/{tickets,leads,invoices,orders}`` (pages) and ``.../{id}`` (one)."""

    def lister(plural: str, kind: str) -> Handler:
        @records_guard
        async def handler(request: web.Request) -> web.StreamResponse:
            query = QueryRecords(
                tenant_id=tenant_of(request),
                kind=kind,
                session_id=SESSION_ID.text(request),
                user_id=USER_ID.text(request),
                limit=LIMIT.integer(request, 50),
                cursor=CURSOR.text(request),
            )
            page = await records.page(query)
            body: dict[str, Any] = {plural: page.records, "next_cursor": page.next_cursor}
            return web.json_response(body)

        return handler

    def reader(kind: str) -> Handler:
        @records_guard
        async def handler(request: web.Request) -> web.StreamResponse:
            record_id = request.match_info["record_id"]
            user_id, session_id = USER_ID.text(request), SESSION_ID.text(request)
            if len(record_id) > MAX_ID:
                raise ApiError(404, f"no {kind} {record_id[:80]!r}", type="not_found")
            record = await records.get(
                tenant_of(request), kind, record_id, user_id=user_id, session_id=session_id
            )
            return web.json_response(record)

        return handler

    routes: list[Route] = []
    for plural, kind in KINDS.items():
        routes.append(
            Route(
                "GET",
                f"/api/{plural}",
                lister(plural, kind),
                f"The tenant's {plural}, newest first, a page at a time "
                "(pass `next_cursor` as `cursor`)",
                {200: Answer(plural.title(), page_model(plural))},
                (404, 422),
                params=(SESSION_ID, USER_ID, LIMIT, CURSOR),
            )
        )
        routes.append(
            Route(
                "GET",
                f"/api/{plural}/{{record_id}}",
                reader(kind),
                f"One of the tenant's {plural} (only the given user's or session's "
                "when `user_id` / `session_id` is set)",
                {200: Answer(kind.title(), RecordOut)},
                (404, 422),
                params=(path("record_id"), USER_ID, SESSION_ID),
            )
        )
    add_routes(app, routes)


def page_model(plural: str) -> type[BaseModel]:
    """The answer of ``GET /api/{plural}``: ``{<plural>: [...], next_cursor}``."""
    fields: dict[str, Any] = {
        plural: (list[dict[str, Any]], Field(description="Newest first")),
        "next_cursor": (str | None, Field(description="The next page's cursor; null: the last")),
    }
    return create_model(f"{plural.title()}Page", **fields)
