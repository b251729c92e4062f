"""Reading query and path parameters, the same way on every route.

``?limit=²`` (a Unicode digit: ``str.isdigit`` says yes, ``int`` says no), a 5,000-digit id,
NUL bytes or NATS subject characters all get a 404/422 in the usual error shape here, before a
route's own code sees them.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field, StringConstraints

from chatbus_gateway.api.errors import ApiError

# ASCII digits only, short enough that int() and every store downstream take the value.
_INT = re.compile(r"[0-9]{1,19}")
# Control characters (C0, DEL) and the Unicode replacement of undecodable bytes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ufffd]")
# Longest path id any route takes (session, user, record and job ids are at most 200).
MAX_ID = 200


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """``?name=`` as an integer from ``lo`` to ``hi`` (422 otherwise), ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(422, f"{name}: an integer from {lo} to {hi}", param=name)
    return int(raw)


def query_text(request: web.Request, name: str, max_length: int = MAX_ID) -> str | None:
    """``?name=`` as non-empty text without control characters, None when absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_length or _CONTROL.search(raw):
        raise ApiError(
            422, f"{name}: 1 to {max_length} characters, no control characters", param=name
        )
    return raw


# A tenant id (as API keys carry them), or "*" for every tenant where an admin may ask so.
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}|\*")


def query_tenant(request: web.Request) -> str | None:
    """``?tenant=``: a tenant id or ``*`` (422 otherwise), None when absent."""
    raw = request.query.get("tenant")
    if raw is not None and not _TENANT.fullmatch(raw):
        raise ApiError(422, "tenant: a tenant id, or * for every tenant", param="tenant")
    return raw


def query_date(request: web.Request, name: str, default: date) -> date:
    """``?name=YYYY-MM-DD`` (422 for anything else, an empty value included)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(422, f"{name}: a date YYYY-MM-DD", param=name) from None


def path_int(request: web.Request, name: str, lo: int, hi: int) -> int:
    """A numeric path segment; anything else names nothing, so it is a 404."""
    raw = request.match_info[name]
    if not _INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(404, f"no {name} {raw[:40]!r}", type="not_found", param=name)
    return int(raw)


def check_path_ids(request: web.Request) -> None:
    """Every path parameter is a plausible id: at most ``MAX_ID`` characters, printable.

    No resource has another name, so anything else is a 404, whatever the route.
    """
    for name, value in request.match_info.items():
        if len(value) > MAX_ID or _CONTROL.search(value):
            raise ApiError(404, f"no such {name}", type="not_found", param=name)


# The request headers the gateway reads (others, a browser's cookies say, are not its business).
READ_HEADERS = (
    "Authorization", "Idempotency-Key", "X-Session-Id", "X-Tenant-Id", "X-Request-Id",
    "X-Forwarded-For", "Accept", "Content-Type",
)  # fmt: skip


def check_headers(request: web.Request) -> None:
    """The headers the gateway reads are UTF-8 text; other bytes are a 400 here.

    aiohttp keeps undecodable bytes as lone surrogates, which fail wherever a value is encoded
    again (hashing an API key or an Idempotency-Key, a session id on the bus): a 502 before.
    """
    headers = request.headers
    for name in READ_HEADERS:
        value = headers.get(name)
        if value is None or value.isascii():
            continue
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ApiError(400, f"{name}: not UTF-8 text", param=name) from None


def _addressable(value: str) -> str:
    if value in (".", ".."):  # a URL path cannot carry these as a segment
        raise ValueError("an id cannot be '.' or '..'")
    return value


# Printable, and no braces (the router matches a path parameter only without them).
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f\\ufffd{}]*$"
_UNADDRESSABLE = re.compile(r"[\x00-\x1f\x7f\ufffd{}]")
_NOT_DOTS = Field(json_schema_extra={"not": {"enum": [".", ".."]}})

# A session or user id sent in a body or header. It is stored, and later read and forgotten
# through a path (``DELETE /api/sessions/{id}``), so a path must be able to name it: 1 to
# ``MAX_ID`` printable characters, no braces, not ``.`` or ``..``. (Such ids were stored,
# then could be neither read nor forgotten; one in ``X-Session-Id`` broke the answer.)
BodyId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_ID, pattern=_PRINTABLE),
    AfterValidator(_addressable),
    _NOT_DOTS,
]
# The same, where an empty string means "no user" (an anonymous caller).
UserId = Annotated[
    str,
    StringConstraints(strict=True, max_length=MAX_ID, pattern=_PRINTABLE),
    AfterValidator(_addressable),
    _NOT_DOTS,
]


# :data:`BodyId` as a JSON schema, for an id carried in a header (``X-Session-Id``).
ID_SCHEMA: dict[str, object] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID,
    "pattern": _PRINTABLE,
    "not": {"enum": [".", ".."]},
}


def check_id(value: str, name: str) -> str:
    """``value`` when it is a usable id (as :data:`BodyId`), else a 422 naming ``name``."""
    if not 0 < len(value) <= MAX_ID or _UNADDRESSABLE.search(value) or value in (".", ".."):
        raise ApiError(422, f"{name}: 1 to {MAX_ID} printable characters, no braces", param=name)
    return value
