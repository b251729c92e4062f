"""Request ids: the server's id of each exchange, and the caller's ``X-Request-Id`` label."""

from __future__ import annotations

import re
import uuid

from aiohttp import web


def new_request_id() -> str:
    """The id of one exchange: always the server's own, never the caller's ``X-Request-Id``.

    Everything keyed by it downstream (the token ledger, memory and cost de-duplication, the
    job) is then unique, so no client value can merge, drop or overwrite another exchange.
    The caller's ``X-Request-Id`` is only a label, echoed back (``echo_request_id``).
    """
    return uuid.uuid4().hex


# A caller's X-Request-Id is a correlation label only: echoed and logged, never an identity.
CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def client_request_id(request: web.Request) -> str | None:
    """The caller's ``X-Request-Id`` when it is a sane label (else None: not echoed)."""
    given = request.headers.get("X-Request-Id", "")
    return given if CLIENT_REQUEST_ID.match(given) else None


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Answer with the caller's own ``X-Request-Id`` (the body keeps the server's id)."""
    label = client_request_id(request)
    if label is not None:
        response.headers["X-Request-Id"] = label
