"""The gateway's route table: every operation declared once, registered and documented from it.

A route module builds :class:`Route` entries (method, path, handler, request model, answers by
status with their models, parameters, auth, summary) and hands them to :func:`add_routes`,
which registers each on aiohttp's router and keeps it in ``app[ROUTES]``. ``/openapi.json``
(:mod:`chatbus_gateway.api.openapi`) is generated from that table and from the pydantic models
the handlers validate with, so what is served and what is documented cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from chatbus_gateway.api import params

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What each error status means, as /openapi.json says it (a route may say it more precisely).
ERRORS: dict[int, str] = {
    400: "Bad request: the body is not JSON (or nests too deep), or not a JSON object",
    401: "Missing or unknown API key",
    402: "Budget exhausted",
    403: "Not allowed for this key",
    404: "Not found (unknown agent, job, dead letter, record)",
    409: "Conflict (Idempotency-Key reused with another body)",
    410: "Expired",
    413: "Body too large",
    422: "Invalid field",
    429: "Rate limited",
    502: "The agent or its language model failed",
    503: "The bus or a store is unavailable, or the gateway is draining",
    504: "The agent did not answer in time",
}
# Every API route may answer these (auth, rate limits, a draining gateway).
API_ERRORS = (401, 429, 503)
BODY_ERRORS = (400, 413, 422)
# What the routes that ask another service (memory, cost, records) may answer.
STORE_ERRORS = (404, 422)
STORE_TEXT = {503: "The memory or cost service is unavailable"}
# Everything a chat may answer besides its reply (both APIs).
CHAT_ERRORS = (400, 401, 402, 404, 409, 413, 422, 429, 502, 503, 504)

# Ids: 1 to 200 characters, no control characters (the gateway refuses those: 404 in a path,
# 422 in a query).
ID: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[^\\u0000-\\u001f\\u007f\\ufffd]*$",
}
MAX_SEQ = 2**63 - 1
# ``?tenant=`` of admin reports: a tenant id, or * for every tenant.
TENANT_OR_ALL: dict[str, Any] = {"type": "string", "pattern": r"^([A-Za-z0-9._-]{1,64}|\*)$"}
DATE: dict[str, Any] = {"type": "string", "format": "date"}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter, as /openapi.json describes it."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any] = field(default_factory=lambda: dict(ID))
    description: str | None = None

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "schema": dict(self.schema),
        }
        if self.description:
            out["description"] = self.description
        return out

    # Reading the value in a handler, with the bounds the document states (422 outside them
    # for a query parameter, 404 for a path segment).

    def integer(self, request: web.Request, default: int = 0) -> int:
        lo, hi = int(self.schema["minimum"]), int(self.schema["maximum"])
        if self.where == "path":
            return params.path_int(request, self.name, lo, hi)
        return params.query_int(request, self.name, default, lo, hi)

    def text(self, request: web.Request) -> str | None:
        return params.query_text(request, self.name, int(self.schema["maxLength"]))


def path(name: str, schema: Mapping[str, Any] | None = None) -> Param:
    return Param(name, "path", schema or ID)


def query(name: str, schema: Mapping[str, Any], description: str | None = None) -> Param:
    return Param(name, "query", schema, description)


def int_query(name: str, lo: int, hi: int, description: str | None = None) -> Param:
    return query(name, {"type": "integer", "minimum": lo, "maximum": hi}, description)


def header(name: str, description: str) -> Param:
    return Param(name, "header", {"type": "string", "minLength": 1, "maxLength": 200}, description)


IDEMPOTENCY_KEY = header("Idempotency-Key", "Replays the first answer of the same request")


@dataclass(frozen=True)
class Answer:
    """One documented answer: its body's model (None: no schema), or another media type."""

    description: str
    model: type[BaseModel] | None = None
    # Also answered as server-sent events (``Accept: text/event-stream``), described so.
    events: str | None = None
    media: tuple[str, ...] = ("application/json",)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # None: registered by someone else (the runtime's probes), only documented here.
    handler: Handler | None
    summary: str
    answers: Mapping[int, Answer]
    errors: Iterable[int] = ()
    # The model the handler validates the JSON body with (its schema is the request body's).
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    # False: no key needed (probes, this document, the web page).
    auth: bool = True
    # Error descriptions more precise than ERRORS for this route.
    error_text: Mapping[int, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.method.upper(), self.path


# The app's table: every route added through add_routes, in order.
ROUTES = web.AppKey("chatbus_gateway_routes", list[Route])


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register ``routes`` on ``app`` (those with a handler) and add them to its table."""
    table = app.setdefault(ROUTES, [])
    for route in routes:
        if route.handler is None:
            pass
        elif route.method == "GET":  # and HEAD, as aiohttp's add_get does
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
        table.append(route)
