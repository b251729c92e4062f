"""The paths of ``/openapi.json``: every endpoint the gateway serves, with its answers."""

from __future__ import annotations

from typing import Any

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

ERRORS = {
    "400": "Bad request: the body is not JSON (or nests too deep), or not a JSON object",
    "401": "Missing or unknown API key",
    "402": "Budget exhausted",
    "403": "Not allowed for this key",
    "404": "Not found (unknown agent, job, dead letter)",
    "409": "Conflict (Idempotency-Key reused with another body)",
    "413": "Body too large",
    "422": "Invalid field",
    "429": "Rate limited",
    "502": "The agent or its language model failed",
    "503": "The bus or a store is unavailable, or the gateway is draining",
    "504": "The agent did not answer in time",
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": ref(name)}}


def answers(ok: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    out = dict(ok)
    for code in errors:
        out[code] = {"description": ERRORS[code], "content": json_body("ErrorOut")}
    return out


def sse(description: str) -> dict[str, Any]:
    return {"text/event-stream": {"schema": {"type": "string", "description": description}}}


def header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }


def path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


API_ERRORS = ["401", "429", "503"]
CHAT_ERRORS = ["400", "401", "402", "404", "409", "413", "422", "429", "502", "503", "504"]
IDEMPOTENCY = header("Idempotency-Key", "Replays the first answer of the same request")
MAX_SEQ = 2**63 - 1
AGENT_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def plain(description: str, content_type: str = "application/json") -> dict[str, Any]:
    return {"200": {"description": description, "content": {content_type: {"schema": {}}}}}


def paths() -> dict[str, Any]:
    return {
        "/api/chat/{agent_id}": {
            "post": {
                "summary": "Send a message to an agent",
                "parameters": [
                    path_param("agent_id", AGENT_ID),
                    {
                        "name": "mode",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["sync", "async"]},
                    },
                    IDEMPOTENCY,
                ],
                "requestBody": {"required": True, "content": json_body("ChatIn")},
                "responses": answers(
                    {
                        "200": {
                            "description": "The agent's reply (JSON, or SSE when asked)",
                            "content": {
                                **json_body("ChatOut"),
                                **sse("chunk events, then done (ChatOut) or error"),
                            },
                        },
                        "202": {"description": "Queued", "content": json_body("JobAccepted")},
                    },
                    CHAT_ERRORS,
                ),
            }
        },
        "/api/agents": {
            "get": {
                "summary": "Agents running on the bus right now",
                "responses": answers(
                    {"200": {"description": "Agents", "content": json_body("AgentsOut")}},
                    API_ERRORS,
                ),
            }
        },
        "/api/jobs/{job_id}": {
            "get": {
                "summary": "An async job's status and reply",
                "parameters": [path_param("job_id", {"type": "string", "maxLength": 100})],
                "responses": answers(
                    {
                        "200": {"description": "The job", "content": json_body("JobOut")},
                        "410": {"description": "Expired", "content": json_body("ErrorOut")},
                    },
                    ["401", "404", "429", "503"],
                ),
            }
        },
        "/api/admin/dead-letters": {
            "get": {
                "summary": "Messages parked after their last delivery (admin)",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "Entries after this seq (a page's next_after)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                    },
                ],
                "responses": answers(
                    {"200": {"description": "Parked", "content": json_body("DeadLettersOut")}},
                    ["401", "403", "422", "429", "503"],
                ),
            }
        },
        "/api/admin/dead-letters/{seq}/redrive": {
            "post": {
                "summary": "Send a parked message back to its queue (admin)",
                "parameters": [
                    path_param("seq", {"type": "integer", "minimum": 1, "maximum": MAX_SEQ})
                ],
                "responses": answers(
                    {"200": {"description": "Re-driven", "content": json_body("RedriveOut")}},
                    ["401", "403", "404", "429", "503"],
                ),
            }
        },
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI-compatible chat completion (model = agent id)",
                "parameters": [
                    header("X-Session-Id", "The chatbus session of this conversation"),
                    IDEMPOTENCY,
                ],
                "requestBody": {"required": True, "content": json_body("ChatCompletionsIn")},
                "responses": answers(
                    {
                        "200": {
                            "description": "A chat.completion, or chat.completion.chunk events",
                            "content": {
                                **json_body("ChatCompletion"),
                                **sse("data: chat.completion.chunk ... data: [DONE]"),
                            },
                        }
                    },
                    CHAT_ERRORS,
                ),
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The agents, as OpenAI models",
                "responses": answers(
                    {"200": {"description": "Models", "content": json_body("ModelList")}},
                    API_ERRORS,
                ),
            }
        },
        "/health": {"get": {"summary": "Liveness", "security": [], "responses": plain("Alive")}},
        "/ready": {
            "get": {
                "summary": "Readiness (NATS connected, Redis reachable, not draining)",
                "security": [],
                "responses": {
                    **plain("Ready"),
                    "503": {"description": "Not ready", "content": {"application/json": {}}},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": plain("Metrics", "text/plain"),
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": plain("OpenAPI")},
        },
    }
