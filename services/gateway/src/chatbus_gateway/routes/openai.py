"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Point the OpenAI SDK at ``http://host:8080/v1`` with a chatbus API key and ``model=<agent id>``.
The agent keeps each conversation's history, so only the **last user message** is sent; the
earlier messages only identify the conversation. The chatbus session id is, in order: the
``X-Session-Id`` header, a ``session_id`` body field (``extra_body``), else the conversation's
own: its first message starts a new session (derived from the ``Idempotency-Key`` when one is
sent, so a retry finds its first answer), and the gateway remembers it under the conversation's
first exchange (the first user message and the reply it got), which later turns carry. Two
conversations that open with the same words are two sessions. The ``user`` field is the
chatbus user id. Unknown fields are ignored, as OpenAI does.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus_gateway.api.body import json_response, read_model
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.openai_schemas import (
    ChatCompletion,
    ChatCompletionsIn,
    InMessage,
    ModelList,
    usage_of,
)
from chatbus_gateway.api.params import ID_SCHEMA, check_id
from chatbus_gateway.api.request_ids import new_request_id
from chatbus_gateway.api.route_table import (
    CHAT_ERRORS,
    IDEMPOTENCY_KEY,
    Answer,
    Param,
    Route,
    add_routes,
)
from chatbus_gateway.api.sse import open_sse, send_event
from chatbus_gateway.auth.caller import tenant_of
from chatbus_gateway.deps import DEPS
from chatbus_gateway.flow.dispatch import AGENT_ID
from chatbus_gateway.flow.pipeline import PIPELINE, REPLAYED
from chatbus_gateway.flow.traffic import CHAT_AGENT
from chatbus_gateway.peers.agents import discover

# How long the gateway remembers a conversation's session (as long as the agents keep history).
CONVERSATION_TTL_S = 7 * 86400


def _derived(*parts: str) -> str:
    return "oa-" + hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]


def _first_exchange(messages: list[InMessage]) -> tuple[str, str | None]:
    """The first user message, and the first assistant reply after it (None: a new one)."""
    for i, m in enumerate(messages):
        if m.role == "user":
            reply = next((r.text() for r in messages[i + 1 :] if r.role == "assistant"), None)
            return m.text(), reply
    return "", None


def _conversation_key(request: web.Request, opening: tuple[str, ...], reply: str) -> str:
    """Where the gateway keeps the session of the conversation that opened so."""
    return f"{request.app[DEPS].settings.redis_prefix}oa:{_derived(*opening, reply)}"


async def session_for(
    request: web.Request, body: ChatCompletionsIn, tenant: str
) -> tuple[str, tuple[str, ...] | None]:
    """The session, and for a new conversation what opened it (to remember once answered)."""
    given = request.headers.get("X-Session-Id") or body.session_id
    if given:
        return check_id(given, "X-Session-Id"), None
    first, reply = _first_exchange(body.messages)
    opening = (tenant, body.user or "", first)
    if reply is None:  # the conversation's first message: a session of its own
        key = request.headers.get("Idempotency-Key")
        session = _derived(*opening, "idem", key) if key else "oa-" + uuid.uuid4().hex
        return session, opening
    remembered = _conversation_key(request, opening, reply)
    known = await request.app[DEPS].link.call("GET", remembered)
    return (known.decode() if known else _derived(remembered)), None


async def remember(
    request: web.Request, opening: tuple[str, ...] | None, session: str, reply: str
) -> None:
    """Keep a new conversation's session under its first exchange, before the answer goes."""
    if opening is not None:
        key = _conversation_key(request, opening, reply)
        await request.app[DEPS].link.call("SET", key, session, "EX", CONVERSATION_TTL_S)


def last_user_message(messages: list[InMessage], max_chars: int) -> str:
    """The new message: the last user message that has text."""
    text = next((m.text() for m in reversed(messages) if m.role == "user" and m.text().strip()), "")
    if not text:
        raise ApiError(422, "messages: needs a non-empty user message", param="messages")
    if len(text) > max_chars:
        raise ApiError(
            422,
            f"messages: the user message is longer than {max_chars} characters",
            param="messages",
        )
    return text


async def chat_completions(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    body = await read_model(request, ChatCompletionsIn, deps.settings.max_body_bytes)
    if not AGENT_ID.match(body.model):
        raise ApiError(404, f"unknown model {body.model[:80]!r}", type="not_found", param="model")
    request[CHAT_AGENT] = body.model
    tenant = tenant_of(request)
    message = last_user_message(body.messages, deps.settings.max_message_chars)
    session, opening = await session_for(request, body, tenant)
    req = ChatRequest(
        request_id=new_request_id(),
        agent=body.model,
        session_id=session,
        message=message,
        user_id=body.user,
        tenant_id=tenant,
    )
    created = int(time.time())
    headers = {"X-Session-Id": req.session_id, "X-Request-Id": req.request_id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(request, req, created, include_usage, headers, opening)
    reply, replayed = await request.app[PIPELINE].reply(request, req)
    await remember(request, opening, req.session_id, reply.reply)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(completion(reply, body.model, created), headers=headers)


def completion(reply: ChatReply, model: str, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{reply.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.reply},
                "finish_reason": "stop",
            }
        ],
        "usage": usage_of(reply.usage.prompt_tokens, reply.usage.completion_tokens),
        "session_id": reply.session_id,
        "agent": reply.agent,
    }


def chunk(
    req: ChatRequest, created: int, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{req.request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.agent,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _stream(
    request: web.Request,
    req: ChatRequest,
    created: int,
    include_usage: bool,
    headers: dict[str, str],
    opening: tuple[str, ...] | None,
) -> web.StreamResponse:
    items = request.app[PIPELINE].stream(request, req)
    try:
        item = await anext(items)  # errors before the first chunk are plain JSON answers
        if request.get(REPLAYED):
            headers["Idempotent-Replayed"] = "true"
        resp = await open_sse(request, headers)
        await send_event(resp, chunk(req, created, {"role": "assistant", "content": ""}, None))
        try:
            while not isinstance(item, ChatReply):
                if item.delta:
                    await send_event(resp, chunk(req, created, {"content": item.delta}, None))
                item = await anext(items)
            await remember(request, opening, req.session_id, item.reply)
            await send_event(resp, chunk(req, created, {}, "stop"))
            if include_usage:
                final = chunk(req, created, {}, None)
                final["choices"] = []
                final["usage"] = usage_of(item.usage.prompt_tokens, item.usage.completion_tokens)
                await send_event(resp, final)
        except ApiError as e:
            await send_event(resp, e.body())
        await send_event(resp, "[DONE]")
        await resp.write_eof()
        return resp
    finally:
        await items.aclose()


async def models(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    agents = await discover(deps.bus, deps.settings.agents_window_s)
    data = [
        {
            "id": a["id"],
            "object": "model",
            "created": 0,
            "owned_by": "chatbus",
            "description": a["description"],
            "instances": a["instances"],
        }
        for a in agents
    ]
    return web.json_response({"object": "list", "data": data})


def setup_openai_routes(app: web.Application) -> None:
    completed = Answer(
        "A chat.completion, or chat.completion.chunk events",
        ChatCompletion,
        events="data: chat.completion.chunk ... data: [DONE]",
    )
    session = Param("X-Session-Id", "header", ID_SCHEMA, "The chatbus session of this conversation")
    add_routes(
        app,
        [
            Route(
                "POST",
                "/v1/chat/completions",
                chat_completions,
                "OpenAI-compatible chat completion (model = agent id)",
                {200: completed},
                CHAT_ERRORS,
                body=ChatCompletionsIn,
                params=(session, IDEMPOTENCY_KEY),
            ),
            Route(
                "GET",
                "/v1/models",
                models,
                "The agents, as OpenAI models",
                {200: Answer("Models", ModelList)},
            ),
        ],
    )
