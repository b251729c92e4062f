"""``GET /openapi.json``: the gateway's API, with schemas taken from the models it validates."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chatbus_gateway.api import openapi_paths
from chatbus_gateway.api.openai_schemas import (
    ChatCompletion,
    ChatCompletionsIn,
    ModelList,
)
from chatbus_gateway.api.schemas import (
    AgentsOut,
    ChatIn,
    ChatOut,
    DeadLettersOut,
    ErrorOut,
    JobAccepted,
    JobOut,
    RedriveOut,
)

MODELS: list[type[BaseModel]] = [
    ChatIn,
    ChatOut,
    AgentsOut,
    ErrorOut,
    JobAccepted,
    JobOut,
    DeadLettersOut,
    RedriveOut,
    ChatCompletionsIn,
    ChatCompletion,
    ModelList,
]


def components() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}"
    )
    return dict(defs.get("$defs", {}))


def build_spec(max_message_chars: int | None = None, auth_on: bool = False) -> dict[str, Any]:
    """The document; ``max_message_chars`` is this gateway's configured message limit, and
    with ``auth_on`` every API operation requires a key (optional in development)."""
    schemas = components()
    if max_message_chars is not None:
        schemas["ChatIn"]["properties"]["message"]["maxLength"] = max_message_chars
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatbus gateway",
            "version": "1.0.0",
            "description": openapi_paths.DESCRIPTION,
        },
        "paths": openapi_paths.paths(),
        "components": {
            "schemas": schemas,
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


# Other route modules describe their paths here: ``app[OPENAPI_PATHS]["/api/x"] = {...}``.
OPENAPI_PATHS = web.AppKey("chatbus_gateway_openapi_paths", dict[str, Any])


def setup_openapi(app: web.Application, max_message_chars: int, auth_on: bool = False) -> None:
    app[OPENAPI_PATHS] = {}
    built: list[dict[str, Any]] = []

    async def openapi_json(request: web.Request) -> web.Response:
        if not built:  # on first use, once every module has added its paths
            spec = build_spec(max_message_chars, auth_on)
            spec["paths"].update(request.app[OPENAPI_PATHS])
            built.append(spec)
        return web.json_response(built[0])

    app.router.add_get("/openapi.json", openapi_json)
