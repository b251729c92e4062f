"""``GET /openapi.json``: generated from the app's route table and the models it validates with.

Every operation comes from ``app[ROUTES]`` (:mod:`chatbus_gateway.api.route_table`): what is
registered is what is documented. Request and answer schemas are the pydantic models the
handlers validate bodies with and build answers from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chatbus_gateway.api.route_table import (
    API_ERRORS,
    ERRORS,
    ROUTES,
    Answer,
    Route,
    add_routes,
    path,
)
from chatbus_gateway.api.schemas import ErrorOut

DESCRIPTION = """\
Chat with chatbus agents over HTTP.

* Native API: `POST /api/chat/{agent_id}` answers JSON, or server-sent events with
  `Accept: text/event-stream` (`chunk` events `{index, delta}`, then `done` with the JSON
  reply, or `error`). `?mode=async` queues the message and answers 202 with a job id.
* OpenAI-compatible API under `/v1`: `model` is the agent id. Only the **last user
  message** is sent: the agent keeps the conversation's history itself. The chatbus
  session is, in order: the `X-Session-Id` header, the `session_id` body field, else a hash
  of the tenant, the `user` field and the conversation's first user message (so a client
  that resends the whole conversation stays in one session).
* Auth: `Authorization: Bearer <api key>` when the gateway runs with `CHATBUS_AUTH=on`.
* Limits: every API answer carries `RateLimit-Limit`, `RateLimit-Remaining`,
  `RateLimit-Reset`; a 429 carries `Retry-After`.
* `Idempotency-Key` on a POST returns the first answer again, without a second model call.
"""

# The runtime's probes (chatbus.runtime registers them before the gateway is wired).
PROBES = (
    Route("GET", "/health", None, "Liveness", {200: Answer("Alive")}, auth=False),
    Route(
        "GET",
        "/ready",
        None,
        "Readiness (NATS connected, Redis reachable, not draining)",
        {200: Answer("Ready"), 503: Answer("Not ready")},
        auth=False,
    ),
    Route(
        "GET",
        "/metrics",
        None,
        "Prometheus metrics",
        {200: Answer("Metrics", media=("text/plain",))},
        auth=False,
    ),
)
_PATH_PARAM = re.compile(r"\{(\w+)\}")


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(answer: Answer) -> dict[str, Any]:
    schema = _ref(answer.model) if answer.model is not None else {}
    out: dict[str, Any] = {media: {"schema": schema} for media in answer.media}
    if answer.events:
        out["text/event-stream"] = {"schema": {"type": "string", "description": answer.events}}
    return out


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary}
    declared = {p.name for p in route.params if p.where == "path"}
    params = [path(n) for n in _PATH_PARAM.findall(route.path) if n not in declared]
    if params or route.params:
        op["parameters"] = [p.spec() for p in (*params, *route.params)]
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    responses: dict[str, Any] = {
        str(status): {"description": a.description, "content": _content(a)}
        for status, a in route.answers.items()
    }
    errors = set(route.errors) | (set(API_ERRORS) if route.auth else set())
    for status in sorted(errors - set(route.answers)):
        responses[str(status)] = {
            "description": route.error_text.get(status) or ERRORS[status],
            "content": {"application/json": {"schema": _ref(ErrorOut)}},
        }
    op["responses"] = dict(sorted(responses.items()))
    if not route.auth:
        op["security"] = []
    return op


def _models(routes: Iterable[Route]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorOut": ErrorOut}
    for route in routes:
        for model in (route.body, *(a.model for a in route.answers.values())):
            if model is not None:
                if found.setdefault(model.__name__, model) is not model:
                    raise ValueError(f"two models named {model.__name__} in /openapi.json")
    return list(found.values())


def build_spec(
    routes: list[Route], max_message_chars: int | None = None, auth_on: bool = False
) -> dict[str, Any]:
    """The document of ``routes``; ``max_message_chars`` is this gateway's configured message
    limit, and with ``auth_on`` every API operation requires a key (optional in development)."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _models(routes)], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    if max_message_chars is not None and "ChatIn" in schemas:
        schemas["ChatIn"]["properties"]["message"]["maxLength"] = max_message_chars
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "chatbus gateway", "version": "1.0.0", "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A chatbus API key (`chatbus keys create --tenant T`)",
                }
            },
        },
        # Required when the gateway runs with CHATBUS_AUTH=on; optional in development.
        "security": [{"bearerAuth": []}] if auth_on else [{"bearerAuth": []}, {}],
    }


def setup_openapi(app: web.Application, max_message_chars: int, auth_on: bool = False) -> None:
    """Serve ``/openapi.json`` (built on first use, once every module added its routes), and
    document the runtime's probes that ``app`` serves."""
    built: list[dict[str, Any]] = []

    async def openapi_json(request: web.Request) -> web.Response:
        if not built:
            built.append(build_spec(request.app[ROUTES], max_message_chars, auth_on))
        return web.json_response(built[0])

    served = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    add_routes(app, [p for p in PROBES if p.path in served])
    document = Answer("OpenAPI 3.1")
    add_routes(
        app,
        [Route("GET", "/openapi.json", openapi_json, "This document", {200: document}, auth=False)],
    )
