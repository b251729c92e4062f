"""Forgetting over the bus: ``DELETE /api/sessions/{id}``, ``DELETE /api/users/{id}`` and
``GET /api/forget/{id}``.

The gateway publishes a :class:`ForgetRequested` on its ``FORGET`` stream and waits up to
``forget_wait_s`` for a :class:`ForgetConfirmed` from every owner in ``FORGET_OWNERS``: all in,
200; otherwise 202 with ``status_url``, where the request's status (read back from the stream,
so any gateway replica answers it, within the caller's tenant only) says which owners are
still pending. The gateway is an owner too: it forgets its own keys of the session (turn order).
"""

from __future__ import annotations

import re
import secrets
import time

from aiohttp import web
from pydantic import ValidationError

from chatbus.contracts.forget import ForgetRequested
from chatbus.errors import BusUnavailable, RequestTimeout
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import STORE_ERRORS, STORE_TEXT, Answer, Route, add_routes
from chatbus_gateway.api.store_schemas import ForgetOut
from chatbus_gateway.auth.caller import tenant_of
from chatbus_gateway.peers.forget import ForgetDesk

FORGET_ID = re.compile(r"^fg_[0-9a-f]{24}$")


def setup_forget_routes(app: web.Application, desk: ForgetDesk) -> None:
    async def forget(request: web.Request, **who: str) -> web.Response:
        try:
            req = ForgetRequested(
                forget_id=f"fg_{secrets.token_hex(12)}",
                tenant_id=tenant_of(request),
                requested_at=time.time(),
                **who,
            )
        except ValidationError as e:
            return ApiError(422, f"invalid id: {e.errors()[0]['msg']}", param="id").response()
        try:
            body = await desk.ask(req)
        except (BusUnavailable, RequestTimeout):
            return ApiError(503, "cannot reach the bus, try again", type="unavailable").response()
        return web.json_response(body, status=200 if body["status"] == "done" else 202)

    async def delete_session(request: web.Request) -> web.Response:
        return await forget(request, session_id=request.match_info["id"])

    async def delete_user(request: web.Request) -> web.Response:
        return await forget(request, user_id=request.match_info["id"])

    async def get_status(request: web.Request) -> web.Response:
        forget_id = request.match_info["id"]
        body = (
            await desk.status(tenant_of(request), forget_id) if FORGET_ID.match(forget_id) else None
        )
        if body is None:
            return ApiError(
                404, f"no forget request {forget_id[:80]!r}", type="not_found"
            ).response()
        return web.json_response(body)

    forgotten = {
        200: Answer("Forgotten by every owner", ForgetOut),
        202: Answer("Not every owner confirmed yet: poll status_url", ForgetOut),
    }
    add_routes(
        app,
        [
            Route(
                "DELETE",
                "/api/sessions/{id}",
                delete_session,
                "Forget a session: every owner deletes its state (a forget event)",
                forgotten,
                STORE_ERRORS,
                error_text=STORE_TEXT,
            ),
            Route(
                "DELETE",
                "/api/users/{id}",
                delete_user,
                "Forget a user across all sessions (a forget event to every owner)",
                forgotten,
                STORE_ERRORS,
                error_text=STORE_TEXT,
            ),
            Route(
                "GET",
                "/api/forget/{id}",
                get_status,
                "Status of a forget request: which owners confirmed, which are pending",
                {200: Answer("The request's status", ForgetOut)},
                STORE_ERRORS,
                error_text=STORE_TEXT,
            ),
        ],
    )
