"""``/openapi.json`` entries for the memory, usage and records endpoints.

Request schemas come from the models the routes validate with; answers are described by
status (their bodies are the services' own JSON).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from chatbus_gateway.api.openapi_paths import ERRORS, json_body
from chatbus_gateway.routes.memory import MAX_UNIX_TIME, ImportBody, SearchBody
from chatbus_gateway.routes.profile import profile_paths
from chatbus_gateway.routes.records import KINDS

# Ids: 1 to 200 characters, no control characters (the gateway refuses those: 404 in a path,
# 422 in a query).
ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[^\\u0000-\\u001f\\u007f\\ufffd]*$",
}

# ``?tenant=`` of admin reports: a tenant id, or * for every tenant.
TENANT_OR_ALL = {"type": "string", "pattern": r"^([A-Za-z0-9._-]{1,64}|\*)$"}


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` resolved in place (refs are global)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return {"application/json": {"schema": resolve(schema)}}


def _search_body() -> dict[str, Any]:
    content = _inline(SearchBody)
    # a session to search, or a user when searching across the user's sessions
    content["application/json"]["schema"]["anyOf"] = [
        {"required": ["session_id"], "properties": {"session_id": ID}},
        {
            "required": ["user_id", "scope"],
            "properties": {"user_id": ID, "scope": {"const": "user"}},
        },
    ]
    return content


def _answers(ok: str, *codes: str) -> dict[str, Any]:
    """The first code is the success (its body is the service's JSON); the rest are errors."""
    success, *errors = codes
    out: dict[str, Any] = {
        success: {"description": ok, "content": {"application/json": {"schema": {}}}}
    }
    text = {**ERRORS, "503": "The memory or cost service is unavailable"}
    for code in errors:
        out[code] = {"description": text[code], "content": json_body("ErrorOut")}
    return out


def _forgotten(errors: tuple[str, ...]) -> dict[str, Any]:
    """200 once every owner confirmed; 202 with ``status_url`` while some are pending."""
    out = _answers("Forgotten by every owner", "200", *errors)
    out["202"] = {
        "description": "Not every owner confirmed yet: poll status_url",
        "content": {"application/json": {"schema": {}}},
    }
    return out


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def store_paths() -> dict[str, Any]:
    errors = ("401", "404", "422", "429", "503")
    body_errors = ("400", "401", "404", "413", "422", "429", "503")
    paths: dict[str, Any] = {
        "/api/sessions/{id}/messages": {
            "get": {
                "summary": "A session's history, oldest first",
                "parameters": [
                    _path("id"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("before", {"type": "number", "minimum": 0, "maximum": MAX_UNIX_TIME}),
                ],
                "responses": _answers("History", "200", *errors),
            },
            "post": {
                "summary": "Import a past transcript into a session",
                "parameters": [_path("id")],
                "requestBody": {"required": True, "content": _inline(ImportBody)},
                "responses": _answers("Imported", "201", *body_errors),
            },
        },
        "/api/memory/search": {
            "post": {
                "summary": "Search a session's (or user's) memory",
                "requestBody": {"required": True, "content": _search_body()},
                "responses": _answers("Scored earlier turns", "200", *body_errors),
            }
        },
        "/api/sessions/{id}": {
            "delete": {
                "summary": "Forget a session: every owner deletes its state (a forget event)",
                "parameters": [_path("id")],
                "responses": _forgotten(errors),
            }
        },
        "/api/forget/{id}": {
            "get": {
                "summary": "Status of a forget request: which owners confirmed, which are pending",
                "parameters": [_path("id")],
                "responses": _answers("The request's status", "200", *errors),
            }
        },
        "/api/users/{id}": {
            "delete": {
                "summary": "Forget a user across all sessions (a forget event to every owner)",
                "parameters": [_path("id")],
                "responses": _forgotten(errors),
            }
        },
        "/api/usage": {
            "get": {
                "summary": "Tokens and cost, grouped",
                "parameters": [
                    _query("from", {"type": "string", "format": "date"}),
                    _query("to", {"type": "string", "format": "date"}),
                    _query(
                        "group_by",
                        {"type": "string", "enum": ["day", "agent", "model", "user", "session"]},
                    ),
                    _query("tenant", TENANT_OR_ALL),
                ],
                "responses": _answers("Usage rows and totals", "200", "403", *errors),
            }
        },
        "/api/budgets": {
            "get": {
                "summary": "Each budget's use in its current period (the caller's tenant; the "
                "admin key sees every rule): `{budgets: [{label, scope, period, unit, soft, "
                "hard, used, state}]}`",
                "responses": _answers("Budget states", "200", *errors),
            }
        },
        "/api/stats": {
            "get": {
                "summary": "This gateway's chat traffic in the last hour, per minute and per "
                "agent (requests, errors, refusals, p50/p95 ms); a tenant sees its own",
                "parameters": [_query("tenant", TENANT_OR_ALL)],
                "responses": _answers("Traffic", "200", *errors),
            }
        },
    }
    paths.update(profile_paths(_path("id"), _answers, errors, body_errors))
    for plural in KINDS:
        paths[f"/api/{plural}"] = {
            "get": {
                "summary": f"The tenant's {plural}, newest first, a page at a time "
                f"(`{{{plural}: [...], next_cursor}}`; pass `next_cursor` as `cursor`)",
                "parameters": [
                    _query("session_id", ID),
                    _query("user_id", ID),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                    _query("cursor", ID),
                ],
                "responses": _answers(
                    f"{plural.title()}", "200", "401", "404", "422", "429", "503"
                ),
            }
        }
        paths[f"/api/{plural}/{{record_id}}"] = {
            "get": {
                "summary": f"One of the tenant's {plural} (only the given user's or session's "
                "when `user_id` / `session_id` is set)",
                "parameters": [_path("record_id"), _query("user_id", ID), _query("session_id", ID)],
                "responses": _answers(
                    f"{plural[:-1].title()}", "200", "401", "404", "422", "429", "503"
                ),
            }
        }
    return paths
