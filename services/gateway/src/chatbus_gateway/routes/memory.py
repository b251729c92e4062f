"""Gateway routes of the memory service: history, transcript import, search.

``GET /api/sessions/{id}/messages``     the stored turns of a session (``?limit=&before=``)
``POST /api/sessions/{id}/messages``    import a past transcript ``[{role, content, ...}]``
``POST /api/memory/search``             ``{session_id, query, limit}`` -> scored turns
(Forgetting a session or user is every owner's business: :mod:`chatbus_gateway.routes.forget`.)

The tenant is ``caller.tenant_of(request)`` (set by the auth middleware), ``"default"`` without one.
Bodies obey the chat bounds: ``MAX_BODY_BYTES`` (413) and ``MAX_MESSAGE_CHARS`` per turn or query
(422); an import takes at most ``MAX_IMPORT_TURNS`` turns per request (422 beyond: send the
transcript in parts), so no request holds the memory service for long. Errors are the gateway's
``{"error": {message, type, code, param}}``; the memory service down is a 503.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from chatbus.contracts.chat import Turn
from chatbus.memory_client import BusMemory
from chatbus_gateway.api.body import read_json
from chatbus_gateway.api.bus_errors import invalid_field, memory_guard
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import (
    BODY_ERRORS,
    STORE_ERRORS,
    STORE_TEXT,
    Answer,
    Route,
    add_routes,
    int_query,
    path,
    query,
)
from chatbus_gateway.api.store_schemas import (
    MAX_UNIX_TIME,
    HistoryOut,
    ImportBody,
    ImportedOut,
    SearchBody,
    SearchOut,
)
from chatbus_gateway.auth.caller import tenant_of

LIMIT = int_query("limit", 1, 1000)


@dataclass(frozen=True)
class Bounds:
    """The chat bounds the memory routes obey (``GatewaySettings``' values)."""

    max_body_bytes: int = 64 * 1024
    max_message_chars: int = 8000

    def check_length(self, text: str, field: str) -> None:
        if len(text) > self.max_message_chars:
            raise ApiError(
                422, f"{field}: longer than {self.max_message_chars} characters", param=field
            )


def _before(request: web.Request) -> float | None:
    raw = request.query.get("before")
    if raw is None:
        return None
    try:
        value = float(raw) if len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_UNIX_TIME:  # NaN and infinities fail this too
        raise ApiError(422, f"before: a unix time from 0 to {MAX_UNIX_TIME}", param="before")
    return value


def _turn_json(t: Turn) -> dict[str, Any]:
    return t.model_dump(exclude_none=True)


def setup_memory_routes(
    app: web.Application, memory: BusMemory, bounds: Bounds | None = None
) -> None:
    """Add the five memory routes to ``app``."""
    bounds = bounds or Bounds()

    @memory_guard
    async def get_messages(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        limit = LIMIT.integer(request, 50)
        turns = await memory.history(tenant_of(request), session_id, limit, _before(request))
        return web.json_response(
            {"session_id": session_id, "messages": [_turn_json(t) for t in turns]}
        )

    @memory_guard
    async def post_messages(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        raw = await read_json(request, bounds.max_body_bytes)
        body = ImportBody.model_validate({"messages": raw} if isinstance(raw, list) else raw)
        for i, m in enumerate(body.messages):
            bounds.check_length(m.content, f"messages.{i}.content")
        user_id = body.user_id or request.get("user_id")
        turns = [
            Turn(
                role=m.role,
                content=m.content,
                speaker=m.speaker,
                created_at=m.created_at or 0.0,
                agent=m.agent,
            )
            for m in body.messages
        ]
        result = await memory.import_turns(
            tenant_of(request), session_id, turns, user_id=str(user_id) if user_id else None
        )
        return web.json_response(
            {"session_id": session_id, "imported": result.imported, "chunks": result.chunks},
            status=201,
        )

    @memory_guard
    async def search(request: web.Request) -> web.StreamResponse:
        body = SearchBody.model_validate(await read_json(request, bounds.max_body_bytes))
        bounds.check_length(body.query, "query")
        user_id = body.user_id or request.get("user_id")
        if body.session_id is None and not (body.scope == "user" and user_id):
            return invalid_field(
                "session_id is required", [{"loc": ["session_id"], "msg": "field required"}]
            )
        result = await memory.search(
            tenant_of(request),
            query=body.query,
            session_id=body.session_id,
            user_id=str(user_id) if user_id else None,
            scope=body.scope,
            k=body.limit,
            threshold=body.threshold,
        )
        return web.json_response(
            {
                "results": [
                    {
                        **_turn_json(h.turn),
                        "score": h.score,
                        "similarity": h.similarity,
                        "session_id": h.session_id,
                        "turn_id": h.turn_id,
                    }
                    for h in result.hits
                ]
            }
        )

    before = query("before", {"type": "number", "minimum": 0, "maximum": MAX_UNIX_TIME})
    messages = "/api/sessions/{id}/messages"
    add_routes(
        app,
        [
            Route(
                "GET",
                messages,
                get_messages,
                "A session's history, oldest first",
                {200: Answer("History", HistoryOut)},
                STORE_ERRORS,
                params=(path("id"), LIMIT, before),
                error_text=STORE_TEXT,
            ),
            Route(
                "POST",
                messages,
                post_messages,
                "Import a past transcript into a session",
                {201: Answer("Imported", ImportedOut)},
                (*STORE_ERRORS, *BODY_ERRORS),
                body=ImportBody,
                error_text=STORE_TEXT,
            ),
            Route(
                "POST",
                "/api/memory/search",
                search,
                "Search a session's (or user's) memory",
                {200: Answer("Scored earlier turns", SearchOut)},
                (*STORE_ERRORS, *BODY_ERRORS),
                body=SearchBody,
                error_text=STORE_TEXT,
            ),
        ],
    )
