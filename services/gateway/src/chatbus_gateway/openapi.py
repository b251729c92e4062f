"""``GET /openapi.json``: the gateway's API, with schemas taken from the models it validates."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chatbus_gateway import openapi_paths
from chatbus_gateway.openai_schemas import (
    ChatCompletion,
    ChatCompletionsIn,
    ModelList,
)
from chatbus_gateway.schemas import (
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


def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatbus gateway",
            "version": "1.0.0",
            "description": openapi_paths.DESCRIPTION,
        },
        "paths": openapi_paths.paths(),
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A chatbus API key (`chatbus keys create --tenant T`)",
                }
            },
        },
        # Required when the gateway runs with CHATBUS_AUTH=on; optional in development.
        "security": [{"bearerAuth": []}, {}],
    }


_SPEC: dict[str, Any] | None = None


async def openapi_json(request: web.Request) -> web.Response:
    global _SPEC
    if _SPEC is None:
        _SPEC = build_spec()
    return web.json_response(_SPEC)


def setup_openapi(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
